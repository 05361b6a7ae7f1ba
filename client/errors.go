package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/goimdev/goim/protocol"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrClosed is returned by every method once Close was called, and by
	// Err after Close.
	ErrClosed = errors.New("client: closed")
	// ErrNotConnected is returned by requests made while the client is
	// between two connections (reconnecting). Retry after the next
	// StateConnected.
	ErrNotConnected = errors.New("client: not connected")
	// ErrConnLost wraps the cause when the connection ends while a request
	// waits for its reply or a write is queued.
	ErrConnLost = errors.New("client: connection lost")
	// ErrHeartbeatTimeout is the cause of a connection closed by the client
	// because nothing arrived for max(Heartbeat, RequestTimeout) after a
	// heartbeat was sent.
	ErrHeartbeatTimeout = errors.New("client: heartbeat timeout")
	// ErrBodyTooLarge is returned when a body exceeds Config.MaxSendBody;
	// the server would close the connection with packet_too_large.
	ErrBodyTooLarge = errors.New("client: body too large")
	// ErrProtocol wraps violations of the wire protocol by the server.
	ErrProtocol = errors.New("client: protocol error")
)

// CodeError is an error answered by the server with a snake_case code
// (protocol/codes.go): a reply body {"code": "...", "message": "..."} of a
// socket request, or an HTTP error of the API.
type CodeError struct {
	// Status is the HTTP status for API errors, 0 for socket replies.
	Status int
	// Code is the snake_case code, e.g. "not_friends", "unknown_op". For an
	// HTTP error whose body is not a code object it is empty.
	Code string
	// Message is the server's human-readable text.
	Message string
}

func (e *CodeError) Error() string {
	s := "goim: " + e.Code
	if e.Code == "" {
		s = "goim: error"
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" (http %d)", e.Status)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is a *CodeError with the same Code (and the
// same Status when target's Status is set), so that
// errors.Is(err, &CodeError{Code: protocol.CodeNotFriends}) works.
func (e *CodeError) Is(target error) bool {
	t, ok := target.(*CodeError)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Status == 0 || t.Status == e.Status)
}

// ErrorCode returns the snake_case code carried by err (a *CodeError,
// *DisconnectError or *AuthError anywhere in its chain), or "".
func ErrorCode(err error) string {
	var ce *CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Code
	}
	var de *DisconnectError
	if errors.As(err, &de) {
		return de.Code
	}
	return ""
}

// DisconnectError is an Op 6 Disconnect received from the server: it closes
// the connection on purpose and says why.
type DisconnectError struct {
	Code   string   // snake_case close code, e.g. "server_draining", "replaced"
	Reason string   // human-readable text
	Addrs  []string // other nodes to reconnect to (server_draining)
	// ReconnectAfter is the server's reconnect_after_ms: wait that long
	// before reconnecting.
	ReconnectAfter time.Duration
}

func (e *DisconnectError) Error() string {
	s := "goim: disconnected by server: " + e.Code
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// AuthError is returned by Dial (and reported by a failed reconnect) when the
// server refused the Auth packet with Op 6.
type AuthError struct {
	Code   string // e.g. "unauthorized", "too_many_connections"
	Reason string
}

func (e *AuthError) Error() string {
	s := "goim: auth refused: " + e.Code
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// terminalCode reports whether an Op 6 code means that reconnecting is
// pointless: the token is refused, another device took the key over, or an
// operator kicked the connection.
func terminalCode(code string) bool {
	switch code {
	case protocol.CodeUnauthorized, protocol.CodeReplaced, protocol.CodeKicked:
		return true
	}
	return false
}
