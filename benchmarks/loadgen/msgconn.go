package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// MsgConn is one authenticated connection of a messaging scenario (chat,
// group, history seeding). Unlike the worker's connections it runs in the
// driver process: the scenario writes Op 4 SendReqs on it and its reader
// goroutine hands every server packet (Op 9 batches split) to a handler.
type MsgConn struct {
	c         *client
	UserID    int64
	Heartbeat time.Duration // the server's announced interval

	started atomic.Bool
	closing atomic.Bool
	done    chan struct{}
	err     error // why the reader ended; valid after done
}

// PacketHandler receives one server packet and its receive time (unix ns).
// Body aliases the read buffer: it is valid only during the call.
type PacketHandler func(p protocol.Packet, recvUnixNano int64)

// DialMsg connects to a comet (transport "tcp" or "ws"), authenticates
// with token (device key) and waits for AuthReply.
//
// A refusal with Op 6 unavailable (the logic did not answer in time, as
// when it is still busy with the previous scenario's disconnects) is retried
// like an SDK client does: up to dialRetries more times, after a backoff of
// 0.5 s doubling to 4 s. Other errors are returned at once.
func DialMsg(ctx context.Context, addr, transport, token, key string, uid int64, timeout time.Duration) (*MsgConn, error) {
	spec := ConnectSpec{Addr: addr, Transport: transport, HandshakeTimeout: timeout}
	spec.setDefaults()
	backoff := dialBackoff
	for attempt := 0; ; attempt++ {
		c, hb, err := dialClient(ctx, &spec, token, key)
		if err == nil {
			return &MsgConn{c: c, UserID: uid, Heartbeat: hb, done: make(chan struct{})}, nil
		}
		if attempt >= dialRetries || !errors.Is(err, errRefused) || !strings.HasSuffix(err.Error(), protocol.CodeUnavailable) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 8*dialBackoff)
	}
}

// Retries of DialMsg after Op 6 unavailable (variables for tests).
var (
	dialRetries = 5
	dialBackoff = 500 * time.Millisecond
)

// Start starts the reader goroutine; it runs until the connection fails or
// Close. h is called from that goroutine only.
func (m *MsgConn) Start(h PacketHandler) {
	if !m.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer close(m.done)
		for {
			p, err := m.c.next()
			if err == nil && p.Op == protocol.OpRaw {
				now := m.c.now
				err = protocol.SplitBatch(p.Body, func(in protocol.Packet) error {
					h(in, now)
					return nil
				})
			} else if err == nil {
				h(p, m.c.now)
			}
			if err != nil {
				if !m.closing.Load() {
					m.err = err
				}
				m.c.nc.Close()
				return
			}
		}
	}()
}

// Write writes one encoded packet (a masked binary frame on WebSocket)
// with a write deadline. It is safe from several goroutines.
func (m *MsgConn) Write(pkt []byte) error {
	if m.c.ws {
		frame, err := ws.CompileFrame(ws.MaskFrame(ws.NewBinaryFrame(pkt)))
		if err != nil {
			return err
		}
		pkt = frame
	}
	// Every write sets its own deadline: writeRaw's deadline stays on the
	// socket, so a write without one could fail on a stale heartbeat
	// deadline.
	return m.c.writeRaw(pkt)
}

// WriteHeartbeat writes an Op 2.
func (m *MsgConn) WriteHeartbeat() error {
	if m.c.ws {
		return m.c.writeRaw(hbWS)
	}
	return m.c.writeRaw(hbTCP)
}

// Close closes the connection and waits for the reader (if started).
func (m *MsgConn) Close() {
	m.closing.Store(true)
	m.c.nc.Close()
	if m.started.Load() {
		<-m.done
	}
}

// Err is why the reader ended on its own (nil while it runs or after
// Close).
func (m *MsgConn) Err() error {
	select {
	case <-m.done:
		return m.err
	default:
		return nil
	}
}

// Dead reports whether the reader ended.
func (m *MsgConn) Dead() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// SendReq builders. A benchmark client_msg_id is "b<run>_<sender>.<n>":
// a number naming the run (client_msg_ids are idempotency keys: a second run
// against the same server must not reuse them), the sender's index in the
// run and its message number, so acks and events map back to the send time
// the sender kept, without parsing the content.

// AppendSendReq appends an encoded Op 4 packet sending a text message
// (to a user when groupID is 0, else to the group). The text holds the
// send time as 16 hex digits.
func AppendSendReq(dst []byte, pktSeq int32, run uint32, sender, n int, toUser, groupID int64, sentUnixNano int64) []byte {
	var body [192]byte
	b := append(body[:0], `{"client_msg_id":"b`...)
	b = strconv.AppendUint(b, uint64(run), 10)
	b = append(b, '_')
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(n), 10)
	if groupID != 0 {
		b = append(b, `","group_id":`...)
		b = strconv.AppendInt(b, groupID, 10)
	} else {
		b = append(b, `","to_user":`...)
		b = strconv.AppendInt(b, toUser, 10)
	}
	b = append(b, `,"type":1,"content":{"text":"`...)
	b = appendHex16(b, uint64(sentUnixNano))
	b = append(b, `"}}`...)
	return protocol.Append(dst, protocol.Packet{Ver: protocol.Version, Op: protocol.OpSendMsg, Seq: pktSeq, Body: b})
}

func appendHex16(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, digits[(v>>uint(i))&0xf])
	}
	return b
}

// ErrNotBench is returned for a client_msg_id this benchmark did not make.
var ErrNotBench = errors.New("not a benchmark client_msg_id")

// ParseBenchID parses "b<run>_<sender>.<n>".
func ParseBenchID(id []byte) (run uint32, sender, n int, err error) {
	if len(id) < 6 || id[0] != 'b' {
		return 0, 0, 0, ErrNotBench
	}
	us := bytes.IndexByte(id, '_')
	dot := bytes.IndexByte(id, '.')
	if us < 2 || dot < us+2 {
		return 0, 0, 0, ErrNotBench
	}
	r, err0 := strconv.ParseUint(string(id[1:us]), 10, 32)
	s, err1 := strconv.Atoi(string(id[us+1 : dot]))
	v, err2 := strconv.Atoi(string(id[dot+1:]))
	if err0 != nil || err1 != nil || err2 != nil || s < 0 || v < 0 {
		return 0, 0, 0, ErrNotBench
	}
	return uint32(r), s, v, nil
}

var (
	keyClientMsgID = []byte(`"client_msg_id":"`)
	keyTypeMessage = []byte(`"type":"message"`)
)

// stringField returns the JSON string value after key (no escapes: the
// benchmark's ids have none), or nil.
func stringField(body, key []byte) []byte {
	i := bytes.Index(body, key)
	if i < 0 {
		return nil
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

// ackBody is the part of SendAck the benchmark reads (slow path).
type ackBody struct {
	Code        any    `json:"code"`
	ClientMsgID string `json:"client_msg_id"`
}

// ParseAck reads a SendAck body: its client_msg_id and code ("" for 0,
// the code string otherwise). The common compact form is scanned without
// a full JSON decode.
func ParseAck(body []byte) (clientMsgID []byte, code string, err error) {
	if bytes.HasPrefix(body, []byte(`{"code":0,`)) {
		if id := stringField(body, keyClientMsgID); id != nil {
			return id, "", nil
		}
	}
	var a ackBody
	if err := sonic.Unmarshal(body, &a); err != nil {
		return nil, "", fmt.Errorf("send ack: %w", err)
	}
	switch c := a.Code.(type) {
	case float64:
		if c != 0 {
			code = strconv.FormatFloat(c, 'f', -1, 64)
		}
	case string:
		code = c
	case nil:
		code = "missing"
	default:
		code = "unparsed"
	}
	return []byte(a.ClientMsgID), code, nil
}

// eventBody is the part of a message event the benchmark reads (slow path).
type eventBody struct {
	Type    string `json:"type"`
	Message struct {
		ClientMsgID string `json:"client_msg_id"`
	} `json:"message"`
}

// ParseMessageEvent reads an Op 22 body: ok is false for an event that is
// not a "message" event; id is the message's client_msg_id.
func ParseMessageEvent(body []byte) (id []byte, ok bool, err error) {
	if bytes.Contains(body, keyTypeMessage) {
		if id := stringField(body, keyClientMsgID); id != nil {
			return id, true, nil
		}
	}
	var e eventBody
	if err := sonic.Unmarshal(body, &e); err != nil {
		return nil, false, fmt.Errorf("event: %w", err)
	}
	if e.Type != "message" {
		return nil, false, nil
	}
	return []byte(e.Message.ClientMsgID), true, nil
}

// HeartbeatLoop writes Op 2 on every live connection of conns every
// interval until stop is closed. Messaging scenarios have receivers that
// never write, which the server would otherwise cut after 3 intervals.
func HeartbeatLoop(conns []*MsgConn, interval time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for _, c := range conns {
				if !c.Dead() {
					_ = c.WriteHeartbeat()
				}
			}
		}
	}()
}
