// Package session is the session registry: which comet holds which user's
// devices (routing), presence, and the room online counts reported by comets.
// The in-memory implementation is the one-process default; a Redis
// implementation serves the distributed mode. Everything in it can be
// rebuilt from the comets, so losing it loses no message.
package session

import (
	"context"
	"errors"
	"time"
)

// ErrKeyInUse is returned by Add when another user's live session holds the
// key: a routing key belongs to one user at a time.
var ErrKeyInUse = errors.New("session: key in use by another user")

// Session is one authenticated connection.
type Session struct {
	UserID   int64
	Key      string // routing key, unique per device of a user
	Server   string // comet node name
	Platform string
	// ConnID identifies the connection on its comet (unique per connection,
	// never reused): Remove and Touch of an older connection with the same
	// key leave a newer connection's session alone.
	ConnID string
}

// ServerInfo is a comet's last report.
type ServerInfo struct {
	Name      string
	TCPAddr   string
	WSAddr    string
	Conns     int32
	IPs       int32
	UpdatedAt time.Time
	// TakenAt is when the comet started building the report (its room
	// snapshot). SetServer keeps the AddRoom marks made after it: a room
	// joined while the report was in flight is not in its snapshot. Zero
	// means the time of SetServer (every mark is cleared).
	TakenAt time.Time
}

// Registry is the session registry. Every method is safe for concurrent use.
type Registry interface {
	// Add records s, replacing a previous session with the same user and key.
	// It fails with ErrKeyInUse when another user's live session holds s.Key.
	Add(ctx context.Context, s Session) error
	// Remove deletes the session of (userID, key) if it is still the one of
	// connection connID on server, and reports whether it did (false for a
	// session that had expired or belongs to another connection).
	Remove(ctx context.Context, userID int64, key, server, connID string) (bool, error)
	// Touch refreshes the liveness of a session (heartbeat). A session the
	// registry does not hold (e.g. after a registry restart) is added; a key
	// whose live session is another connection's (on this server or another)
	// or another user's is left alone.
	Touch(ctx context.Context, s Session) error
	// UserSessions returns the live sessions of each of userIDs (users with
	// none are absent from the map).
	UserSessions(ctx context.Context, userIDs []int64) (map[int64][]Session, error)
	// KeyOwner returns the user holding key, if any session has it.
	KeyOwner(ctx context.Context, key string) (userID int64, server string, ok bool, err error)
	// KeyServers returns the server of each key that has a live session.
	KeyServers(ctx context.Context, keys []string) (map[string]string, error)

	// SetServer records a comet's report: its addresses, load and the
	// online count of each of its rooms (replacing the previous set). AddRoom
	// marks made before info.TakenAt are cleared; later ones are kept.
	SetServer(ctx context.Context, info ServerInfo, rooms map[string]int32) error
	// AddRoom marks room as present on server until a SetServer whose
	// snapshot (TakenAt) is later than the mark. It
	// works for a server that has not reported yet (RoomServers lists it;
	// Servers does not).
	AddRoom(ctx context.Context, server, room string) error
	// RoomServers returns the servers that have members in room.
	RoomServers(ctx context.Context, room string) ([]string, error)
	// RoomCounts returns the online count of each room summed over servers.
	RoomCounts(ctx context.Context) (map[string]int32, error)
	// Servers returns the live servers (reported within the expiry window).
	Servers(ctx context.Context) ([]ServerInfo, error)
}

// BatchToucher is implemented by a Registry that refreshes many sessions in
// one call (Redis: one pipeline), with Touch's rules for each.
type BatchToucher interface {
	TouchMany(ctx context.Context, ss []Session) error
}
