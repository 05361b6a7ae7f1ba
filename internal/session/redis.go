package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures the Redis registry. Zero values take the default
// documented on each field.
type RedisConfig struct {
	// Prefix starts every key. Default "goim:session:".
	Prefix string `yaml:"prefix"`
	// SessionTTL is how long a session lives without Add or Touch (see
	// MemoryConfig.SessionTTL). Default 5m.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// ServerTTL is how long a comet's report (SetServer) stays valid: a
	// comet that has not reported within it disappears from Servers,
	// RoomServers and RoomCounts. Default 30s.
	ServerTTL time.Duration `yaml:"server_ttl"`
}

// DefaultRedisConfig returns the default configuration.
func DefaultRedisConfig() RedisConfig {
	return RedisConfig{Prefix: "goim:session:", SessionTTL: 5 * time.Minute, ServerTTL: 30 * time.Second}
}

// Redis is the session registry of the distributed mode, shared by every
// logic and job process. All times are the Redis server's clock (TIME in
// the scripts), so the processes' clocks do not matter, except for
// ServerInfo.TakenAt which is compared with it as in Memory (markSlack).
//
// Keys (P: the prefix; SEP: the byte 0x1f):
//
//	P u:<user>     hash  key -> server SEP connID SEP platform SEP touched-ms;
//	               PEXPIRE SessionTTL from the last write; a field is live
//	               while touched-ms + SessionTTL is ahead (expired fields are
//	               deleted by the user's next Add)
//	P k:<key>      string  user SEP server SEP connID SEP touched-ms: the
//	               key's owner, live by the same rule as the user's field;
//	               PX SessionTTL+1s reclaims it (the margin keeps a key
//	               judged expired by its time from blocking another user)
//	P s:<server>   hash  info (JSON of ServerInfo), at (ms of the report)
//	P sr:<server>  hash  room -> online count of the last report
//	P sm:<server>  hash  room -> ms of an AddRoom mark not cleared yet
//	P r:<room>     set   servers whose sr or sm holds the room
//	P live         zset  every known server (reported or only marking
//	               rooms) scored by the ms it expires
//	P servers      zset  reported servers scored the same
//
// Sessions expire by their times, their keys by PEXPIRE. A server is live
// while its score in live is ahead: RoomServers checks the score of each
// member of the room's set, Servers and RoomCounts read the servers zset.
// An expired server's keys and room memberships are deleted by the next
// SetServer of any server, or its own AddRoom (as Memory sweeps). Every
// write that must be atomic (the ConnID checks of Remove and Touch,
// ErrKeyInUse, the TakenAt rule of SetServer against AddRoom) is one Lua
// script. The server scripts touch keys they compute (the rooms of a
// server), so Redis Cluster is not supported: use one Redis (with replicas
// and Sentinel if wanted). A lost or flushed
// Redis is repaired by the comets: their heartbeats (Touch) re-add sessions
// and their next report (SetServer) restores rooms and servers.
type Redis struct {
	c          redis.UniversalClient
	p          string
	sessionTTL int64 // ms
	serverTTL  int64 // ms
}

var _ Registry = (*Redis)(nil)

// NewRedis returns a registry on c, which the caller owns (and closes).
// c must not be a cluster client.
func NewRedis(c redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	if c == nil {
		return nil, errors.New("session: NewRedis without a client")
	}
	if _, ok := c.(*redis.ClusterClient); ok {
		return nil, errors.New("session: the Redis registry does not support Redis Cluster")
	}
	d := DefaultRedisConfig()
	if cfg.Prefix == "" {
		cfg.Prefix = d.Prefix
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = d.SessionTTL
	}
	if cfg.ServerTTL <= 0 {
		cfg.ServerTTL = d.ServerTTL
	}
	if cfg.SessionTTL < time.Millisecond || cfg.ServerTTL < time.Millisecond {
		return nil, errors.New("session: Redis TTLs must be at least 1ms")
	}
	return &Redis{
		c:          c,
		p:          cfg.Prefix,
		sessionTTL: cfg.SessionTTL.Milliseconds(),
		serverTTL:  cfg.ServerTTL.Milliseconds(),
	}, nil
}

const sep = "\x1f"

func (r *Redis) userKey(uid int64) string {
	return r.p + "u:" + strconv.FormatInt(uid, 10)
}
func (r *Redis) keyKey(key string) string     { return r.p + "k:" + key }
func (r *Redis) serverKey(name string) string { return r.p + "s:" + name }
func (r *Redis) reportKey(name string) string { return r.p + "sr:" + name }
func (r *Redis) marksKey(name string) string  { return r.p + "sm:" + name }
func (r *Redis) roomKey(room string) string   { return r.p + "r:" + room }
func (r *Redis) serversKey() string           { return r.p + "servers" }
func (r *Redis) liveKey() string              { return r.p + "live" }
func wrap(op string, err error) error         { return fmt.Errorf("session: redis %s: %w", op, err) }
func validName(s string) bool                 { return !strings.Contains(s, sep) }
func (r *Redis) sessionArgs(s Session) []any {
	return []any{s.UserID, s.Key, s.Server, s.ConnID, s.Platform, r.sessionTTL}
}

func checkSession(s Session) error {
	if s.Key == "" || s.Server == "" {
		return errInvalidSession
	}
	if !validName(s.Server) || !validName(s.ConnID) {
		return errors.New("session: server or connection id contains 0x1f")
	}
	return nil
}

// luaPrelude is shared by the scripts.
const luaPrelude = `
local SEP = '\31'
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%.0f', n) end
local function touched(v) return tonumber(string.match(v, '(%d+)$')) end
`

// luaPut stores the session of ARGV (uid, key, server, connID, platform,
// ttl) in KEYS[1] (the user) and KEYS[2] (the key), unless another user
// holds the key (-1). clean deletes the user's expired sessions.
const luaPut = `
local function put(now, clean)
  local ttl = tonumber(ARGV[6])
  local held = redis.call('GET', KEYS[2])
  if held and string.match(held, '^([^\31]*)') ~= ARGV[1] and touched(held) + ttl > now then return -1 end
  if clean then
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 2 do
      if all[i] ~= ARGV[2] and touched(all[i+1]) + ttl <= now then
        redis.call('HDEL', KEYS[1], all[i])
      end
    end
  end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. SEP .. ARGV[4] .. SEP .. ARGV[5] .. SEP .. fmt(now))
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('SET', KEYS[2], ARGV[1] .. SEP .. ARGV[3] .. SEP .. ARGV[4] .. SEP .. fmt(now), 'PX', ttl + 1000)
  return 1
end
`

var addScript = redis.NewScript(luaPrelude + luaPut + `
return put(nowms(), true)
`)

// touchScript: a live session of another connection is left alone (0);
// the same connection's is refreshed, a missing or expired one added.
var touchScript = redis.NewScript(luaPrelude + luaPut + `
local now = nowms()
local v = redis.call('HGET', KEYS[1], ARGV[2])
if v and touched(v) + tonumber(ARGV[6]) > now then
  local ident = ARGV[3] .. SEP .. ARGV[4] .. SEP
  if string.sub(v, 1, #ident) ~= ident then return 0 end
  return put(now, false)
end
return put(now, true)
`)

// removeScript: ARGV uid, key, server, connID, ttl. 1 when it removed a
// live session.
var removeScript = redis.NewScript(luaPrelude + `
local v = redis.call('HGET', KEYS[1], ARGV[2])
if not v then return 0 end
local ident = ARGV[3] .. SEP .. ARGV[4] .. SEP
if string.sub(v, 1, #ident) ~= ident then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
local owner = ARGV[1] .. SEP .. ARGV[3] .. SEP .. ARGV[4] .. SEP
local held = redis.call('GET', KEYS[2])
if held and string.sub(held, 1, #owner) == owner then redis.call('DEL', KEYS[2]) end
if touched(v) + tonumber(ARGV[5]) > nowms() then return 1 end
return 0
`)

// Add records s, replacing a previous session with the same user and key.
func (r *Redis) Add(ctx context.Context, s Session) error {
	if err := checkSession(s); err != nil {
		return err
	}
	n, err := addScript.Run(ctx, r.c, []string{r.userKey(s.UserID), r.keyKey(s.Key)}, r.sessionArgs(s)...).Int()
	if err != nil {
		return wrap("add", err)
	}
	if n < 0 {
		return ErrKeyInUse
	}
	return nil
}

// Remove deletes the session of (userID, key) if it is connection connID's
// on server, and reports whether it was live.
func (r *Redis) Remove(ctx context.Context, userID int64, key, server, connID string) (bool, error) {
	if key == "" || !validName(server) || !validName(connID) {
		return false, nil
	}
	n, err := removeScript.Run(ctx, r.c, []string{r.userKey(userID), r.keyKey(key)},
		userID, key, server, connID, r.sessionTTL).Int()
	if err != nil {
		return false, wrap("remove", err)
	}
	return n == 1, nil
}

// Touch refreshes the liveness of s, adding it when the registry has no
// live session for (s.UserID, s.Key) (see Registry.Touch).
// TouchMany implements BatchToucher: the Touch script for every session, in
// one pipeline (the script is loaded first so that the pipeline can use
// EVALSHA). Invalid sessions are skipped; the first error is returned.
func (r *Redis) TouchMany(ctx context.Context, ss []Session) error {
	if len(ss) == 0 {
		return nil
	}
	if err := touchScript.Load(ctx, r.c).Err(); err != nil {
		return wrap("touch many", err)
	}
	pipe := r.c.Pipeline()
	var first error
	for _, s := range ss {
		if err := checkSession(s); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		touchScript.EvalSha(ctx, pipe, []string{r.userKey(s.UserID), r.keyKey(s.Key)}, r.sessionArgs(s)...)
	}
	if _, err := pipe.Exec(ctx); err != nil && first == nil {
		first = wrap("touch many", err)
	}
	return first
}

var _ BatchToucher = (*Redis)(nil)

func (r *Redis) Touch(ctx context.Context, s Session) error {
	if err := checkSession(s); err != nil {
		return err
	}
	if err := touchScript.Run(ctx, r.c, []string{r.userKey(s.UserID), r.keyKey(s.Key)}, r.sessionArgs(s)...).Err(); err != nil {
		return wrap("touch", err)
	}
	return nil
}

// UserSessions returns the live sessions of each of userIDs, each user's
// sorted by key: one pipeline of TIME and one HGETALL per user.
func (r *Redis) UserSessions(ctx context.Context, userIDs []int64) (map[int64][]Session, error) {
	out := make(map[int64][]Session, len(userIDs))
	if len(userIDs) == 0 {
		return out, nil
	}
	uids := make([]int64, 0, len(userIDs))
	seen := make(map[int64]struct{}, len(userIDs))
	for _, uid := range userIDs {
		if _, dup := seen[uid]; !dup {
			seen[uid] = struct{}{}
			uids = append(uids, uid)
		}
	}
	pipe := r.c.Pipeline()
	tc := pipe.Time(ctx)
	cmds := make([]*redis.MapStringStringCmd, len(uids))
	for i, uid := range uids {
		cmds[i] = pipe.HGetAll(ctx, r.userKey(uid))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap("user sessions", err)
	}
	now := tc.Val().UnixMilli()
	for i, uid := range uids {
		fields := cmds[i].Val()
		if len(fields) == 0 {
			continue
		}
		ss := make([]Session, 0, len(fields))
		for key, v := range fields {
			s, touched, ok := parseSession(uid, key, v)
			if ok && touched+r.sessionTTL > now {
				ss = append(ss, s)
			}
		}
		if len(ss) > 0 {
			sort.Slice(ss, func(i, j int) bool { return ss[i].Key < ss[j].Key })
			out[uid] = ss
		}
	}
	return out, nil
}

// parseSession decodes a field of a user hash.
func parseSession(uid int64, key, v string) (s Session, touched int64, ok bool) {
	server, rest, ok1 := strings.Cut(v, sep)
	connID, rest, ok2 := strings.Cut(rest, sep)
	i := strings.LastIndex(rest, sep)
	if !ok1 || !ok2 || i < 0 {
		return Session{}, 0, false
	}
	touched, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return Session{}, 0, false
	}
	return Session{UserID: uid, Key: key, Server: server, Platform: rest[:i], ConnID: connID}, touched, true
}

// parseOwner decodes a key's owner: user SEP server SEP connID SEP
// touched-ms.
func parseOwner(v string) (uid int64, server string, touched int64, ok bool) {
	u, rest, ok1 := strings.Cut(v, sep)
	server, rest, ok2 := strings.Cut(rest, sep)
	i := strings.LastIndex(rest, sep)
	if !ok1 || !ok2 || i < 0 {
		return 0, "", 0, false
	}
	uid, err1 := strconv.ParseInt(u, 10, 64)
	touched, err2 := strconv.ParseInt(rest[i+1:], 10, 64)
	return uid, server, touched, err1 == nil && err2 == nil
}

// KeyOwner returns the user and server of key's live session: one
// pipeline of TIME and GET.
func (r *Redis) KeyOwner(ctx context.Context, key string) (int64, string, bool, error) {
	owners, err := r.owners(ctx, []string{key})
	if err != nil {
		return 0, "", false, wrap("key owner", err)
	}
	o, ok := owners[key]
	return o.uid, o.server, ok, nil
}

// KeyServers returns the server of each key that has a live session: one
// pipeline of TIME and MGET.
func (r *Redis) KeyServers(ctx context.Context, keys []string) (map[string]string, error) {
	owners, err := r.owners(ctx, keys)
	if err != nil {
		return nil, wrap("key servers", err)
	}
	out := make(map[string]string, len(owners))
	for k, o := range owners {
		out[k] = o.server
	}
	return out, nil
}

type owner struct {
	uid    int64
	server string
}

// owners returns the live owner of each of keys that has one.
func (r *Redis) owners(ctx context.Context, keys []string) (map[string]owner, error) {
	out := make(map[string]owner, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rk := make([]string, len(keys))
	for i, k := range keys {
		rk[i] = r.keyKey(k)
	}
	pipe := r.c.Pipeline()
	tc := pipe.Time(ctx)
	mc := pipe.MGet(ctx, rk...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	now := tc.Val().UnixMilli()
	for i, v := range mc.Val() {
		if s, ok := v.(string); ok {
			if uid, server, touched, ok := parseOwner(s); ok && touched+r.sessionTTL > now {
				out[keys[i]] = owner{uid, server}
			}
		}
	}
	return out, nil
}

// markSlackMs is markSlack in ms.
const markSlackMs = int64(markSlack / time.Millisecond)

// luaServers holds the helpers of the server scripts. ARGV[1] is the
// prefix; KEYS[1] the live zset, KEYS[2] the reported servers' zset.
const luaServers = `
local P = ARGV[1]
-- drop forgets a server: its rooms, marks, report and liveness.
local function drop(name)
  local sr, sm = P .. 'sr:' .. name, P .. 'sm:' .. name
  for _, k in ipairs({sr, sm}) do
    for _, r in ipairs(redis.call('HKEYS', k)) do redis.call('SREM', P .. 'r:' .. r, name) end
  end
  redis.call('DEL', sr, sm, P .. 's:' .. name)
  redis.call('ZREM', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end
-- sweep drops the servers expired by now.
local function sweep(now)
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now))) do drop(name) end
end
local function chunked(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
`

// setServerScript: KEYS live, servers, s, sr, sm; ARGV prefix, name, ttl,
// takenAt (ms, 0: none), slack (ms), info JSON, then room, count pairs.
// Invariant: server is in the set of room iff room is in its sr or sm.
var setServerScript = redis.NewScript(luaPrelude + luaServers + `
local now = nowms()
sweep(now)
local name = ARGV[2]
local exp = now + tonumber(ARGV[3])
local taken = tonumber(ARGV[4])
local cutoff = math.huge -- no snapshot time: every mark is older
if taken ~= 0 then cutoff = taken - tonumber(ARGV[5]) end
local new = {}
for i = 7, #ARGV, 2 do new[ARGV[i]] = ARGV[i+1] end
local old, member = {}, {}
local oldall = redis.call('HGETALL', KEYS[4])
for i = 1, #oldall, 2 do old[oldall[i]] = oldall[i+1]; member[oldall[i]] = true end
local keep, dropped = {}, {}
local marks = redis.call('HGETALL', KEYS[5])
for i = 1, #marks, 2 do
  member[marks[i]] = true
  if tonumber(marks[i+1]) >= cutoff then keep[marks[i]] = true else dropped[#dropped+1] = marks[i] end
end
local set, del = {}, {}
for r, n in pairs(new) do
  keep[r] = true
  if old[r] ~= n then set[#set+1] = r; set[#set+1] = n end
end
for r in pairs(old) do
  if not new[r] then del[#del+1] = r end
end
for r in pairs(member) do
  if not keep[r] then redis.call('SREM', P .. 'r:' .. r, name) end
end
for r in pairs(keep) do
  if not member[r] then redis.call('SADD', P .. 'r:' .. r, name) end
end
chunked('HDEL', KEYS[4], del)
chunked('HSET', KEYS[4], set)
chunked('HDEL', KEYS[5], dropped)
redis.call('HSET', KEYS[3], 'info', ARGV[6], 'at', fmt(now))
redis.call('ZADD', KEYS[1], fmt(exp), name)
redis.call('ZADD', KEYS[2], fmt(exp), name)
return 1
`)

// addRoomScript: KEYS live, servers, room, sm; ARGV prefix, name, room,
// ttl. A server not known or expired starts fresh, for ttl; a live one
// keeps its expiry.
var addRoomScript = redis.NewScript(luaPrelude + luaServers + `
local now = nowms()
local name = ARGV[2]
local exp = tonumber(redis.call('ZSCORE', KEYS[1], name))
if not exp or exp <= now then
  if exp then drop(name) end
  redis.call('ZADD', KEYS[1], fmt(now + tonumber(ARGV[4])), name)
end
redis.call('HSET', KEYS[4], ARGV[3], fmt(now))
redis.call('SADD', KEYS[3], name)
return 1
`)

// roomServersScript: KEYS room, live. The room's servers that are live.
var roomServersScript = redis.NewScript(luaPrelude + `
local now = nowms()
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local exp = redis.call('ZSCORE', KEYS[2], name)
  if exp and tonumber(exp) > now then out[#out+1] = name end
end
return out
`)

// liveScript returns the members of zset KEYS[1] scored after now.
var liveScript = redis.NewScript(luaPrelude + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. fmt(nowms()), '+inf')
`)

// serverJSON is the stored ServerInfo (Name is the key; UpdatedAt the
// registry's clock).
type serverJSON struct {
	TCPAddr string `json:"tcp,omitempty"`
	WSAddr  string `json:"ws,omitempty"`
	Conns   int32  `json:"conns,omitempty"`
	IPs     int32  `json:"ips,omitempty"`
	TakenAt int64  `json:"taken,omitempty"` // Unix ns, 0: zero time
}

// SetServer records a comet's report (see Registry.SetServer). One script:
// O(rooms of the report, old report and marks), with Redis commands only
// for what changed: steady reports write nothing per room but the counts
// that changed. It first forgets the servers that expired (their rooms,
// marks and report), as Memory does.
func (r *Redis) SetServer(ctx context.Context, info ServerInfo, rooms map[string]int32) error {
	if info.Name == "" {
		return errors.New("session: server report without a name")
	}
	sj := serverJSON{TCPAddr: info.TCPAddr, WSAddr: info.WSAddr, Conns: info.Conns, IPs: info.IPs}
	var taken int64
	if !info.TakenAt.IsZero() {
		sj.TakenAt = info.TakenAt.UnixNano()
		taken = max(info.TakenAt.UnixMilli(), 1)
	}
	js, err := json.Marshal(sj)
	if err != nil {
		return fmt.Errorf("session: encode server info: %w", err)
	}
	args := make([]any, 0, 6+2*len(rooms))
	args = append(args, r.p, info.Name, r.serverTTL, taken, markSlackMs, js)
	for room, n := range rooms {
		if room != "" && n > 0 {
			args = append(args, room, n)
		}
	}
	keys := []string{r.liveKey(), r.serversKey(), r.serverKey(info.Name), r.reportKey(info.Name), r.marksKey(info.Name)}
	if err := setServerScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		return wrap("set server", err)
	}
	return nil
}

// AddRoom marks room as present on server (see Registry.AddRoom).
func (r *Redis) AddRoom(ctx context.Context, server, room string) error {
	if server == "" || room == "" {
		return errors.New("session: AddRoom needs a server and a room")
	}
	keys := []string{r.liveKey(), r.serversKey(), r.roomKey(room), r.marksKey(server)}
	if err := addRoomScript.Run(ctx, r.c, keys, r.p, server, room, r.serverTTL).Err(); err != nil {
		return wrap("add room", err)
	}
	return nil
}

// RoomServers returns the live servers with members in room, sorted: one
// script reading the room's set and the servers' expiry, O(servers of the
// room).
func (r *Redis) RoomServers(ctx context.Context, room string) ([]string, error) {
	out, err := roomServersScript.Run(ctx, r.c, []string{r.roomKey(room), r.liveKey()}).StringSlice()
	if err != nil {
		return nil, wrap("room servers", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	slices.Sort(out)
	return out, nil
}

// liveServers returns the servers that reported within ServerTTL.
func (r *Redis) liveServers(ctx context.Context) ([]string, error) {
	names, err := liveScript.Run(ctx, r.c, []string{r.serversKey()}).StringSlice()
	if err != nil {
		return nil, wrap("servers", err)
	}
	return names, nil
}

// RoomCounts returns the online count of each room summed over the live
// servers' last reports: two round trips.
func (r *Redis) RoomCounts(ctx context.Context) (map[string]int32, error) {
	names, err := r.liveServers(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int32)
	if len(names) == 0 {
		return out, nil
	}
	pipe := r.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, name := range names {
		cmds[i] = pipe.HGetAll(ctx, r.reportKey(name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap("room counts", err)
	}
	for _, c := range cmds {
		for room, v := range c.Val() {
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				out[room] += int32(n)
			}
		}
	}
	return out, nil
}

// Servers returns the servers that reported within ServerTTL, sorted by
// name: two round trips.
func (r *Redis) Servers(ctx context.Context) ([]ServerInfo, error) {
	names, err := r.liveServers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ServerInfo, 0, len(names))
	if len(names) == 0 {
		return out, nil
	}
	pipe := r.c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, name := range names {
		cmds[i] = pipe.HMGet(ctx, r.serverKey(name), "info", "at")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap("servers", err)
	}
	for i, c := range cmds {
		v := c.Val()
		js, ok1 := v[0].(string)
		at, ok2 := v[1].(string)
		if !ok1 || !ok2 {
			continue // expired between the two round trips
		}
		var sj serverJSON
		if err := json.Unmarshal([]byte(js), &sj); err != nil {
			return nil, fmt.Errorf("session: decode server %s: %w", names[i], err)
		}
		ms, _ := strconv.ParseInt(at, 10, 64)
		info := ServerInfo{Name: names[i], TCPAddr: sj.TCPAddr, WSAddr: sj.WSAddr, Conns: sj.Conns, IPs: sj.IPs,
			UpdatedAt: time.UnixMilli(ms)}
		if sj.TakenAt != 0 {
			info.TakenAt = time.Unix(0, sj.TakenAt)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
