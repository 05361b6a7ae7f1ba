package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"

	"github.com/gobwas/ws"

	"github.com/goimdev/goim/protocol"
)

// dialNet opens the network connection to addr and, for WebSocket, performs
// the upgrade. It returns the connection and the reader the packet stream is
// read from.
func (c *Client) dialNet(ctx context.Context, addr, token string) (net.Conn, io.Reader, *wsFrameReader, error) {
	dial := c.cfg.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	if c.cfg.Transport != TransportWS {
		nc, err := dial(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("client: dial %s: %w", addr, err)
		}
		return nc, nc, nil, nil
	}
	u := url.URL{Scheme: "ws", Host: addr, Path: c.cfg.WSPath}
	if c.cfg.TokenInQuery && token != "" {
		u.RawQuery = url.Values{"token": {token}}.Encode()
	}
	d := ws.Dialer{NetDial: dial}
	nc, br, _, err := d.Dial(ctx, u.String())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client: websocket dial %s: %w", addr, err)
	}
	var src io.Reader = nc
	if br != nil {
		// Frames the server sent right after the handshake are buffered.
		src = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), nc)
	}
	fr := &wsFrameReader{src: bufio.NewReaderSize(src, c.cfg.ReadBufferSize)}
	return nc, fr, fr, nil
}

// appendWSFrame appends a masked client frame of the given opcode around
// the payload produced by fill (which appends to its argument), as RFC 6455
// requires of clients.
func appendWSFrame(dst []byte, op ws.OpCode, n int, fill func([]byte) []byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case n <= 125:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = fill(dst)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// appendPacket appends the encoding of one packet for the transport: the
// bare packet on TCP, a masked binary frame holding it on WebSocket.
func appendPacket(dst []byte, isWS bool, op, seq int32, body []byte) []byte {
	p := protocol.Packet{Ver: protocol.Version, Op: op, Seq: seq, Body: body}
	if !isWS {
		return protocol.Append(dst, p)
	}
	return appendWSFrame(dst, ws.OpBinary, p.Size(), func(b []byte) []byte { return protocol.Append(b, p) })
}
