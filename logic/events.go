package logic

import (
	"context"
	"slices"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/protocol"
)

// Op 22 event types of relations (docs/protocol.md, section "Events").
const (
	evFriendRequest = "friend_request"
	evFriendAdded   = "friend_added"
	evFriendRemoved = "friend_removed"
	evGroupChanged  = "group_changed"
)

// The "change" of a group_changed event.
const (
	changeCreated          = "created"
	changeMemberJoined     = "member_joined"
	changeMemberLeft       = "member_left"
	changeMemberKicked     = "member_kicked"
	changeRoleChanged      = "role_changed"
	changeMuted            = "muted"
	changeUnmuted          = "unmuted"
	changeNickname         = "nickname"
	changeAnnouncement     = "announcement"
	changeUpdated          = "updated"
	changeDismissed        = "dismissed"
	changeOwnerTransferred = "owner_transferred"
)

// friendRequestEvent goes to the recipient's devices.
type friendRequestEvent struct {
	Type        string      `json:"type"` // friend_request
	Request     requestJSON `json:"request"`
	Merged      bool        `json:"merged"` // an earlier pending request was updated
	CreatedAtMS int64       `json:"created_at_ms"`
}

// friendEvent is friend_added and friend_removed; each side gets its own
// body naming the other side.
type friendEvent struct {
	Type      string `json:"type"`
	FriendID  int64  `json:"friend_id"`
	By        int64  `json:"by"`
	RequestID int64  `json:"request_id,omitempty"` // friend_added
	Version   int64  `json:"version,omitempty"`    // friend_added: the recipient's friend-list version after the change
}

// groupEvent is group_changed.
type groupEvent struct {
	Type         string     `json:"type"` // group_changed
	GroupID      int64      `json:"group_id"`
	Change       string     `json:"change"`
	UserIDs      []int64    `json:"user_ids,omitempty"` // the members concerned
	By           int64      `json:"by"`                 // who made the change
	Version      int64      `json:"version"`            // the group's member-list version after the change
	Role         string     `json:"role,omitempty"`     // role_changed
	MutedUntilMS int64      `json:"muted_until_ms,omitempty"`
	Nickname     *string    `json:"nickname,omitempty"`     // nickname
	Announcement *string    `json:"announcement,omitempty"` // announcement
	Fields       []string   `json:"fields,omitempty"`       // updated: the fields that changed
	Group        *groupJSON `json:"group,omitempty"`        // created, updated, owner_transferred: the group after the change
}

// emit pushes an Op 22 event to every online device of users: the sessions
// are resolved in the registry and one Keys push message per comet is
// published on the bus (keyed by the comet name, so events to one device
// keep their order). The change the event reports is already committed: a
// failure is logged and counted, not returned.
func (s *Service) emit(ctx context.Context, typ string, users []int64, ev any) {
	if len(users) == 0 {
		return
	}
	users = slices.Clone(users)
	slices.Sort(users)
	users = slices.Compact(users)
	body, err := sonic.Marshal(ev)
	if err != nil {
		eventErrors.Inc()
		s.log.Error("event not encoded", "type", typ, "err", err)
		return
	}
	sessions, err := s.sessions.UserSessions(ctx, users)
	if err != nil {
		eventErrors.Inc()
		s.log.Warn("event not published: session lookup failed", "type", typ, "users", len(users), "err", err)
		return
	}
	groups := make(map[string][]string)
	for _, u := range users {
		for _, ss := range sessions[u] {
			groups[ss.Server] = append(groups[ss.Server], ss.Key)
		}
	}
	if len(groups) == 0 {
		return // nobody online
	}
	servers := make([]string, 0, len(groups))
	for srv := range groups {
		servers = append(servers, srv)
	}
	slices.Sort(servers)
	msgs := make([]bus.Message, len(servers))
	for i, srv := range servers {
		m := pushmsg.Msg{Type: pushmsg.Keys, Operation: protocol.OpEvent, Server: srv, Keys: groups[srv], Body: body}
		msgs[i] = bus.Message{Topic: bus.TopicPush, Key: srv, Value: m.Marshal()}
	}
	if err := s.bus.Publish(ctx, msgs...); err != nil {
		eventErrors.Inc()
		s.log.Warn("event not published: bus failed", "type", typ, "users", len(users), "err", err)
		return
	}
	events.WithLabelValues(typ).Inc()
}
