// Package pushmsg defines the push message that logic publishes on the bus
// and job consumes, and its compact binary encoding.
package pushmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type says who a push is for.
type Type uint8

const (
	// Keys pushes to the connections with the given keys on one server.
	Keys Type = 1
	// Room pushes to every connection in a room, on every server that has members.
	Room Type = 2
	// Broadcast pushes to every connection on every server.
	Broadcast Type = 3
)

// Msg is one push.
type Msg struct {
	Type      Type
	Operation int32    // the op of the packet delivered to clients
	Seq       int32    // Seq of the delivered packet (0 for pushes; a request's Seq for late replies)
	Speed     int32    // Broadcast: connections per second per server (0 = unlimited)
	Server    string   // Keys: the comet node holding Keys
	Room      string   // Room: the room key
	Keys      []string // Keys: connection keys
	Body      []byte   // the packet body
}

const version = 1

// Limits applied when decoding.
const (
	maxKeys   = 1 << 20
	maxString = 1 << 16
)

var errCorrupt = errors.New("pushmsg: corrupt message")

// Marshal encodes m.
func (m *Msg) Marshal() []byte {
	n := 1 + 1 + 4*3 + 4 + len(m.Server) + 4 + len(m.Room) + 4 + 4 + len(m.Body)
	for _, k := range m.Keys {
		n += 4 + len(k)
	}
	b := make([]byte, 0, n)
	b = append(b, version, byte(m.Type))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Operation))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Seq))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Speed))
	b = appendString(b, m.Server)
	b = appendString(b, m.Room)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Keys)))
	for _, k := range m.Keys {
		b = appendString(b, k)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Body)))
	return append(b, m.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Unmarshal decodes b into m. m.Body aliases b.
func (m *Msg) Unmarshal(b []byte) error {
	r := reader{b: b}
	if v := r.byte(); v != version {
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("pushmsg: unknown version %d", v)
	}
	m.Type = Type(r.byte())
	m.Operation = int32(r.u32())
	m.Seq = int32(r.u32())
	m.Speed = int32(r.u32())
	m.Server = r.str()
	m.Room = r.str()
	nk := r.u32()
	if nk > maxKeys || int(nk)*4 > len(r.b) {
		return errCorrupt
	}
	m.Keys = nil
	if nk > 0 {
		m.Keys = make([]string, 0, nk)
	}
	for i := uint32(0); i < nk && r.err == nil; i++ {
		m.Keys = append(m.Keys, r.str())
	}
	m.Body = r.bytes(int(r.u32()))
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return errCorrupt
	}
	switch m.Type {
	case Keys, Room, Broadcast:
	default:
		return fmt.Errorf("pushmsg: unknown type %d", m.Type)
	}
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) str() string {
	n := r.u32()
	if n > maxString {
		r.err = errCorrupt
		return ""
	}
	return string(r.take(int(n)))
}

func (r *reader) bytes(n int) []byte { return r.take(n) }
