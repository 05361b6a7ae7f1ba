package logic

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/protocol"
)

// goimResp is the goim push API's success answer.
type goimResp struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func writeGoim(w http.ResponseWriter, data any) error {
	return writeJSON(w, http.StatusOK, goimResp{Data: data})
}

// Bus keys of push messages (see the package doc).
const broadcastKey = "broadcast"

// queryList returns the values of a query parameter, each split on commas,
// trimmed, without empty items; at most max items.
func queryList(r *http.Request, name string, max int) ([]string, error) {
	var out []string
	for _, v := range r.URL.Query()[name] {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			if len(out) == max {
				return nil, errBadRequest(fmt.Sprintf("more than %d %s", max, name))
			}
			out = append(out, item)
		}
	}
	return out, nil
}

func queryOperation(r *http.Request) (int32, error) {
	v := r.URL.Query().Get("operation")
	if v == "" {
		return 0, errBadRequest("operation is required")
	}
	op, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, errBadRequest("operation must be a 32-bit integer")
	}
	// Ops below 1000 are the protocol's own (Op 6 closes, Op 9 batches,
	// Op 22 events...): a business push must not impersonate them.
	if int32(op) < protocol.OpBusinessMin {
		return 0, errBadRequest(fmt.Sprintf("operation must be a business op (>= %d)", protocol.OpBusinessMin))
	}
	return int32(op), nil
}

func (s *Service) publish(r *http.Request, kind string, msgs []pushmsg.Msg, keys []string) error {
	if len(msgs) == 0 {
		return nil
	}
	bm := make([]bus.Message, len(msgs))
	for i := range msgs {
		bm[i] = bus.Message{Topic: bus.TopicPush, Key: keys[i], Value: msgs[i].Marshal()}
	}
	if err := s.bus.Publish(r.Context(), bm...); err != nil {
		s.log.Error("push publish failed", "type", kind, "err", err)
		return errUnavailable
	}
	pushes.WithLabelValues(kind).Inc()
	return nil
}

// keysByServer groups keys by server, keeping the order of keys within each
// group, and returns the servers sorted.
func keysByServer(keys []string, server func(string) (string, bool)) (map[string][]string, []string) {
	groups := make(map[string][]string)
	for _, k := range keys {
		if srv, ok := server(k); ok {
			groups[srv] = append(groups[srv], k)
		}
	}
	servers := make([]string, 0, len(groups))
	for srv := range groups {
		servers = append(servers, srv)
	}
	slices.Sort(servers)
	return groups, servers
}

// pushToServers publishes one Keys message per server.
func (s *Service) pushToServers(r *http.Request, kind string, op int32, body []byte, groups map[string][]string, servers []string) error {
	msgs := make([]pushmsg.Msg, len(servers))
	for i, srv := range servers {
		msgs[i] = pushmsg.Msg{Type: pushmsg.Keys, Operation: op, Server: srv, Keys: groups[srv], Body: body}
	}
	return s.publish(r, kind, msgs, servers)
}

type pushResult struct {
	Keys    int `json:"keys"`    // targeted keys found online
	Servers int `json:"servers"` // comets they are on
}

// POST /goim/push/keys?operation=&keys=a,b  body: the message
func (s *Service) handlePushKeys(w http.ResponseWriter, r *http.Request) error {
	op, err := queryOperation(r)
	if err != nil {
		return err
	}
	keys, err := queryList(r, "keys", s.cfg.MaxPushTargets)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errBadRequest("keys is required")
	}
	for _, k := range keys {
		if !validKey(k) {
			return errBadRequest("invalid key " + strconv.Quote(k))
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	where, err := s.sessions.KeyServers(r.Context(), keys)
	if err != nil {
		return fmt.Errorf("push keys: %w", err)
	}
	groups, servers := keysByServer(keys, func(k string) (string, bool) { srv, ok := where[k]; return srv, ok })
	if err := s.pushToServers(r, "keys", op, body, groups, servers); err != nil {
		return err
	}
	return writeGoim(w, pushResult{Keys: len(where), Servers: len(servers)})
}

// POST /goim/push/mids?operation=&mids=1,2  body: the message
func (s *Service) handlePushMids(w http.ResponseWriter, r *http.Request) error {
	op, err := queryOperation(r)
	if err != nil {
		return err
	}
	items, err := queryList(r, "mids", s.cfg.MaxPushTargets)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return errBadRequest("mids is required")
	}
	mids := make([]int64, len(items))
	for i, it := range items {
		mid, err := strconv.ParseInt(it, 10, 64)
		if err != nil || mid <= 0 {
			return errBadRequest("invalid mid " + strconv.Quote(it))
		}
		mids[i] = mid
	}
	slices.Sort(mids)
	mids = slices.Compact(mids)
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	sessions, err := s.sessions.UserSessions(r.Context(), mids)
	if err != nil {
		return fmt.Errorf("push mids: %w", err)
	}
	var keys []string
	where := make(map[string]string)
	for _, mid := range mids {
		for _, ss := range sessions[mid] {
			if _, dup := where[ss.Key]; !dup {
				keys = append(keys, ss.Key)
				where[ss.Key] = ss.Server
			}
		}
	}
	groups, servers := keysByServer(keys, func(k string) (string, bool) { srv, ok := where[k]; return srv, ok })
	if err := s.pushToServers(r, "mids", op, body, groups, servers); err != nil {
		return err
	}
	return writeGoim(w, pushResult{Keys: len(keys), Servers: len(servers)})
}

// roomKey builds goim's room key "type://room".
func roomKey(typ, room string) string { return typ + "://" + room }

// POST /goim/push/room?operation=&type=&room=  body: the message
func (s *Service) handlePushRoom(w http.ResponseWriter, r *http.Request) error {
	op, err := queryOperation(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	typ, room := q.Get("type"), q.Get("room")
	if typ == "" || room == "" {
		return errBadRequest("type and room are required")
	}
	key := roomKey(typ, room)
	if !validRoom(key) {
		return errBadRequest(fmt.Sprintf("room key must be at most %d printable characters without commas", maxRoomLen))
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	msg := pushmsg.Msg{Type: pushmsg.Room, Operation: op, Room: key, Body: body}
	if err := s.publish(r, "room", []pushmsg.Msg{msg}, []string{key}); err != nil {
		return err
	}
	return writeGoim(w, nil)
}

// POST /goim/push/all?operation=&speed=  body: the message
func (s *Service) handlePushAll(w http.ResponseWriter, r *http.Request) error {
	op, err := queryOperation(r)
	if err != nil {
		return err
	}
	var speed int64
	if v := r.URL.Query().Get("speed"); v != "" {
		speed, err = strconv.ParseInt(v, 10, 32)
		if err != nil || speed < 0 {
			return errBadRequest("speed must be a non-negative 32-bit integer")
		}
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	msg := pushmsg.Msg{Type: pushmsg.Broadcast, Operation: op, Speed: int32(speed), Body: body}
	if err := s.publish(r, "all", []pushmsg.Msg{msg}, []string{broadcastKey}); err != nil {
		return err
	}
	return writeGoim(w, nil)
}

type roomTop struct {
	RoomID string `json:"room_id"`
	Count  int32  `json:"count"`
}

const (
	defaultTopLimit = 10
	maxTopLimit     = 1000
)

// GET /goim/online/top?type=&limit=  the rooms of a type with the most
// members, as goim: [{"room_id","count"}], count descending.
func (s *Service) handleOnlineTop(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	typ := q.Get("type")
	if typ == "" {
		return errBadRequest("type is required")
	}
	limit := defaultTopLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return errBadRequest("limit must be a positive integer")
		}
		limit = min(n, maxTopLimit)
	}
	counts, err := s.sessions.RoomCounts(r.Context())
	if err != nil {
		return fmt.Errorf("online top: %w", err)
	}
	prefix := typ + "://"
	tops := make([]roomTop, 0)
	for key, n := range counts {
		if id, ok := strings.CutPrefix(key, prefix); ok && n > 0 {
			tops = append(tops, roomTop{RoomID: id, Count: n})
		}
	}
	slices.SortFunc(tops, func(a, b roomTop) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.RoomID, b.RoomID))
	})
	if len(tops) > limit {
		tops = tops[:limit]
	}
	return writeGoim(w, tops)
}

// GET /goim/online/room?type=&rooms=a,b  {room id: count} as goim.
func (s *Service) handleOnlineRoom(w http.ResponseWriter, r *http.Request) error {
	typ := r.URL.Query().Get("type")
	if typ == "" {
		return errBadRequest("type is required")
	}
	rooms, err := queryList(r, "rooms", s.cfg.MaxPushTargets)
	if err != nil {
		return err
	}
	if len(rooms) == 0 {
		return errBadRequest("rooms is required")
	}
	counts, err := s.sessions.RoomCounts(r.Context())
	if err != nil {
		return fmt.Errorf("online room: %w", err)
	}
	res := make(map[string]int32, len(rooms))
	for _, room := range rooms {
		res[room] = counts[roomKey(typ, room)]
	}
	return writeGoim(w, res)
}

type onlineTotal struct {
	IPCount   int64 `json:"ip_count"`
	ConnCount int64 `json:"conn_count"`
}

// GET /goim/online/total  {"ip_count","conn_count"} over all comets, as goim.
func (s *Service) handleOnlineTotal(w http.ResponseWriter, r *http.Request) error {
	servers, err := s.sessions.Servers(r.Context())
	if err != nil {
		return fmt.Errorf("online total: %w", err)
	}
	var t onlineTotal
	for _, srv := range servers {
		t.IPCount += int64(srv.IPs)
		t.ConnCount += int64(srv.Conns)
	}
	return writeGoim(w, t)
}

type node struct {
	Name    string `json:"name"`
	TCPAddr string `json:"tcp_addr,omitempty"`
	WSAddr  string `json:"ws_addr,omitempty"`
	Conns   int32  `json:"conns"`
}

type nodesWeighted struct {
	Nodes      []node `json:"nodes"`
	HeartbeatS int64  `json:"heartbeat_s"`
}

// GET /goim/nodes/weighted  the live comets, least loaded first, with their
// advertised client addresses.
func (s *Service) handleNodesWeighted(w http.ResponseWriter, r *http.Request) error {
	servers, err := s.sessions.Servers(r.Context())
	if err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	slices.SortFunc(servers, func(a, b session.ServerInfo) int {
		return cmp.Or(cmp.Compare(a.Conns, b.Conns), cmp.Compare(a.Name, b.Name))
	})
	res := nodesWeighted{Nodes: make([]node, len(servers)), HeartbeatS: max(int64(s.cfg.HeartbeatInterval/time.Second), 1)}
	for i, srv := range servers {
		res.Nodes[i] = node{Name: srv.Name, TCPAddr: srv.TCPAddr, WSAddr: srv.WSAddr, Conns: srv.Conns}
	}
	return writeGoim(w, res)
}
