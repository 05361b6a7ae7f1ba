package standalone

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/protocol"
)

// rawConn is a client written only from PROTOCOL.md: it frames bytes by hand
// (header built with encoding/binary, not the protocol package) to prove
// goim v2 byte compatibility.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
	ws bool
}

func rawDial(t *testing.T, s *Server, transport string, query string) *rawConn {
	t.Helper()
	rc := &rawConn{t: t, ws: transport == "ws"}
	if rc.ws {
		nc, br, _, err := ws.Dial(context.Background(), "ws://"+s.WSAddr().String()+"/sub"+query)
		if err != nil {
			t.Fatalf("ws dial: %v", err)
		}
		rc.nc = nc
		if br != nil {
			rc.br = br
		} else {
			rc.br = bufio.NewReader(nc)
		}
	} else {
		nc, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		rc.nc, rc.br = nc, bufio.NewReader(nc)
	}
	t.Cleanup(func() { rc.nc.Close() })
	return rc
}

// frame builds a goim v2 packet by hand.
func frame(op, seq int32, body []byte) []byte {
	b := make([]byte, 16+len(body))
	binary.BigEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.BigEndian.PutUint16(b[4:], 16)
	binary.BigEndian.PutUint16(b[6:], 1)
	binary.BigEndian.PutUint32(b[8:], uint32(op))
	binary.BigEndian.PutUint32(b[12:], uint32(seq))
	copy(b[16:], body)
	return b
}

// write sends bytes: on TCP as they are, on WebSocket as one masked binary frame.
func (c *rawConn) write(b []byte) {
	c.t.Helper()
	var err error
	if c.ws {
		err = wsutil.WriteClientBinary(c.nc, b)
	} else {
		_, err = c.nc.Write(b)
	}
	if err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

type rawPacket struct {
	op, seq int32
	body    []byte
}

// readMessage returns the packets of the next unit the server sent: one
// packet on TCP; the packets of one frame on WebSocket. ok is false at EOF.
func (c *rawConn) readMessage() (pkts []rawPacket, ok bool) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var data []byte
	if c.ws {
		for {
			msg, op, err := wsutil.ReadServerData(struct {
				io.Reader
				io.Writer
			}{c.br, c.nc})
			if err != nil {
				return nil, false
			}
			if op == ws.OpBinary || op == ws.OpText {
				data = msg
				break
			}
		}
	} else {
		hdr := make([]byte, 16)
		if _, err := io.ReadFull(c.br, hdr); err != nil {
			return nil, false
		}
		n := int(binary.BigEndian.Uint32(hdr))
		data = make([]byte, n)
		copy(data, hdr)
		if _, err := io.ReadFull(c.br, data[16:]); err != nil {
			c.t.Fatalf("short body: %v", err)
		}
	}
	for len(data) > 0 {
		if len(data) < 16 || binary.BigEndian.Uint16(data[4:]) != 16 {
			c.t.Fatalf("bad header % x", data)
		}
		n := int(binary.BigEndian.Uint32(data))
		if n > len(data) {
			c.t.Fatalf("packet length %d beyond the %d bytes of the frame", n, len(data))
		}
		pkts = append(pkts, rawPacket{
			op:   int32(binary.BigEndian.Uint32(data[8:])),
			seq:  int32(binary.BigEndian.Uint32(data[12:])),
			body: data[16:n],
		})
		data = data[n:]
	}
	return pkts, true
}

// read returns the next packet (one unit holding one packet).
func (c *rawConn) read() rawPacket {
	c.t.Helper()
	pkts, ok := c.readMessage()
	if !ok {
		c.t.Fatal("connection closed")
	}
	if len(pkts) != 1 {
		c.t.Fatalf("want one packet, got %d", len(pkts))
	}
	return pkts[0]
}

func (c *rawConn) auth(token, room string) rawPacket {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"token": token, "room_id": room, "platform": "pc", "accepts": []int32{1000}})
	c.write(frame(7, 1, body))
	p := c.read()
	if p.op != 8 || p.seq != 1 {
		c.t.Fatalf("auth reply op %d seq %d body %s", p.op, p.seq, p.body)
	}
	return p
}

// expectClose reads until EOF and returns the Op 6 code seen, if any.
func (c *rawConn) expectClose() string {
	c.t.Helper()
	code := ""
	for {
		pkts, ok := c.readMessage()
		if !ok {
			return code
		}
		for _, p := range pkts {
			if p.op == 6 {
				var d struct {
					Code string `json:"code"`
				}
				if err := json.Unmarshal(p.body, &d); err != nil {
					c.t.Fatalf("Op 6 body %q: %v", p.body, err)
				}
				code = d.Code
			}
		}
	}
}

func TestRawGoimV2(t *testing.T) {
	s := startServer(t)
	u := newUser(t, s, "rawuser")
	for _, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) {
			c := rawDial(t, s, transport, "")
			reply := c.auth(u.token, "")
			var ar struct {
				UserID int64  `json:"user_id"`
				Key    string `json:"key"`
			}
			if err := json.Unmarshal(reply.body, &ar); err != nil || ar.UserID != u.id || ar.Key == "" {
				t.Fatalf("AuthReply %s: %v", reply.body, err)
			}

			// ChangeRoom echo.
			room := "live://raw-" + transport
			c.write(frame(12, 5, []byte(room)))
			if p := c.read(); p.op != 13 || p.seq != 5 || string(p.body) != room {
				t.Fatalf("ChangeRoom reply op %d seq %d body %q", p.op, p.seq, p.body)
			}

			// Pipelined: heartbeat, sub and an unknown op in one write; all answered in order.
			var batch []byte
			batch = append(batch, frame(2, 6, nil)...)
			batch = append(batch, frame(14, 7, []byte("1001,1002"))...)
			batch = append(batch, frame(999, 8, []byte("?"))...)
			if transport == "tcp" {
				c.write(batch)
			} else { // one packet per client frame on WebSocket
				c.write(frame(2, 6, nil))
				c.write(frame(14, 7, []byte("1001,1002")))
				c.write(frame(999, 8, []byte("?")))
			}
			hb := c.read()
			if hb.op != 3 || hb.seq != 6 || len(hb.body) != 4 || binary.BigEndian.Uint32(hb.body) != 1 {
				t.Fatalf("heartbeat reply op %d seq %d body % x", hb.op, hb.seq, hb.body)
			}
			if p := c.read(); p.op != 15 || p.seq != 7 || string(p.body) != "1001,1002" {
				t.Fatalf("sub reply op %d seq %d body %q", p.op, p.seq, p.body)
			}
			if p := c.read(); p.op != 999 || p.seq != 8 || !strings.Contains(string(p.body), `"unknown_op"`) {
				t.Fatalf("unknown op reply op %d seq %d body %q", p.op, p.seq, p.body)
			}

			// A room push: plain packets on TCP, one Op 9 frame on WebSocket.
			if err := s.api().PushRoom(testCtx(t), 1000, "live", "raw-"+transport, []byte("hello room")); err != nil {
				t.Fatal(err)
			}
			pkts, ok := c.readMessage()
			if !ok {
				t.Fatal("closed before the room push")
			}
			if transport == "tcp" {
				if len(pkts) != 1 || pkts[0].op != 1000 || string(pkts[0].body) != "hello room" {
					t.Fatalf("TCP room push: %+v", pkts)
				}
			} else {
				if len(pkts) != 1 || pkts[0].op != 9 {
					t.Fatalf("WS room push: want one Op 9 packet, got %+v", pkts)
				}
				var inner []protocol.Packet
				if err := protocol.SplitBatch(pkts[0].body, func(p protocol.Packet) error {
					inner = append(inner, p)
					return nil
				}); err != nil || len(inner) != 1 || inner[0].Op != 1000 || string(inner[0].Body) != "hello room" {
					t.Fatalf("WS Op 9 content: %+v %v", inner, err)
				}
			}
		})
	}
}

// TestBadInput sends each kind of bad input and checks the answer, then that
// a fresh client is still served.
func TestBadInput(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Comet.MaxBody = 1024 })
	u := newUser(t, s, "gooduser")
	huge := frame(4, 1, nil)
	binary.BigEndian.PutUint32(huge, 16+1025)
	badHeader := frame(2, 1, nil)
	binary.BigEndian.PutUint16(badHeader[4:], 12)
	short := frame(2, 1, nil)
	binary.BigEndian.PutUint32(short, 8)

	tests := []struct {
		name      string
		transport string
		authFirst bool
		send      []byte
		wantCode  string // "" = closed, Op 6 optional
	}{
		{"op before auth tcp", "tcp", false, frame(2, 1, nil), protocol.CodeUnauthorized},
		{"op before auth ws", "ws", false, frame(4, 1, []byte("{}")), protocol.CodeUnauthorized},
		{"legacy mid auth refused", "tcp", false, frame(7, 1, []byte(`{"mid":1,"key":"k","room_id":"live://1"}`)), protocol.CodeUnauthorized},
		{"oversized pack len before auth", "tcp", false, huge, protocol.CodePacketTooLarge},
		{"oversized pack len after auth", "tcp", true, huge, protocol.CodePacketTooLarge},
		{"oversized pack len ws", "ws", true, huge, protocol.CodePacketTooLarge},
		{"header len 12", "tcp", true, badHeader, ""},
		{"pack len below 16", "tcp", true, short, ""},
		{"header len 12 ws", "ws", false, badHeader, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawDial(t, s, tt.transport, "")
			if tt.authFirst {
				c.auth(u.token, "")
			}
			c.write(tt.send)
			code := c.expectClose()
			if tt.wantCode != "" && code != tt.wantCode {
				t.Fatalf("Op 6 code %q, want %q", code, tt.wantCode)
			}
			ok := rawDial(t, s, tt.transport, "")
			ok.auth(u.token, "")
		})
	}

	t.Run("garbage websocket frames", func(t *testing.T) {
		for _, garbage := range [][]byte{
			[]byte("GET /nothttp\r\n\r\n"),
			{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		} {
			nc, err := net.Dial("tcp", s.WSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			_, _ = nc.Write(garbage)
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, nc)
			nc.Close()
			if err != nil {
				t.Fatalf("server did not close a garbage connection: %v", err)
			}
		}
		// An upgraded connection that sends an unmasked (server-style) frame.
		c := rawDial(t, s, "ws", "")
		_ = ws.WriteFrame(c.nc, ws.NewBinaryFrame(frame(7, 1, []byte("{}"))))
		c.expectClose()
		rawDial(t, s, "ws", "").auth(u.token, "")
	})

	t.Run("token in websocket query", func(t *testing.T) {
		c := rawDial(t, s, "ws", "?token="+u.token)
		c.write(frame(7, 1, []byte(`{"token":""}`)))
		if p := c.read(); p.op != 8 {
			t.Fatalf("auth with the query token: op %d %s", p.op, p.body)
		}
	})
}
