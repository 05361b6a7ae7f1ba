package msgcache

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/goimdev/goim/internal/store"
)

// errBadMessage: a cached message that does not decode (network input from
// Redis).
var errBadMessage = errors.New("msgcache: malformed cached message")

const codecVersion = 'm'

// appendMessage encodes m without its conversation id (the key holds it):
// a version byte, then varints seq, id, sender, receiver, group, type,
// status, created_at (Unix ms), client_msg_id, mentions and content, each
// byte string prefixed by its length. The seq comes first, so two messages
// of a window never encode alike.
func appendMessage(b []byte, m *store.Message) []byte {
	b = append(b, codecVersion)
	b = binary.AppendVarint(b, m.Seq)
	b = binary.AppendVarint(b, m.ID)
	b = binary.AppendVarint(b, m.SenderID)
	b = binary.AppendVarint(b, m.ReceiverID)
	b = binary.AppendVarint(b, m.GroupID)
	b = binary.AppendVarint(b, int64(m.Type))
	b = binary.AppendVarint(b, int64(m.Status))
	b = binary.AppendVarint(b, m.CreatedAt.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(m.ClientMsgID)))
	b = append(b, m.ClientMsgID...)
	b = binary.AppendUvarint(b, uint64(len(m.Mentions)))
	for _, id := range m.Mentions {
		b = binary.AppendVarint(b, id)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Content)))
	return append(b, m.Content...)
}

// decodeMessage decodes what appendMessage wrote, rejecting anything else
// (limits of store.ValidateMessage).
func decodeMessage(s string, m *store.Message) error {
	if len(s) == 0 || s[0] != codecVersion {
		return errBadMessage
	}
	p := s[1:]
	bad := false
	varint := func() int64 {
		if bad {
			return 0
		}
		v, n := binary.Varint([]byte(p[:min(len(p), binary.MaxVarintLen64)]))
		if n <= 0 {
			bad = true
			return 0
		}
		p = p[n:]
		return v
	}
	bytes := func(limit int) string {
		if bad {
			return ""
		}
		v, n := binary.Uvarint([]byte(p[:min(len(p), binary.MaxVarintLen64)]))
		if n <= 0 || v > uint64(limit) || v > uint64(len(p)-n) {
			bad = true
			return ""
		}
		out := p[n : n+int(v)]
		p = p[n+int(v):]
		return out
	}
	*m = store.Message{}
	m.Seq = varint()
	m.ID = varint()
	m.SenderID = varint()
	m.ReceiverID = varint()
	m.GroupID = varint()
	typ, status := varint(), varint()
	created := varint()
	m.ClientMsgID = bytes(store.MaxClientMsgIDLen)
	if !bad {
		n, k := binary.Uvarint([]byte(p[:min(len(p), binary.MaxVarintLen64)]))
		if k <= 0 || n > store.MaxMentions {
			return errBadMessage
		}
		p = p[k:]
		if n > 0 {
			m.Mentions = make([]int64, n)
			for i := range m.Mentions {
				m.Mentions[i] = varint()
			}
		}
	}
	content := bytes(store.MaxContentLen)
	if bad || len(p) != 0 || m.Seq <= 0 || typ < 0 || typ > 1<<20 || status < 0 || status > 1<<20 {
		return errBadMessage
	}
	m.Type, m.Status = int(typ), int(status)
	m.CreatedAt = time.UnixMilli(created)
	m.Content = []byte(content)
	return nil
}
