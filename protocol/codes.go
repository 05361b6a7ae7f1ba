package protocol

// Error and close codes shared by Op 6 (Disconnect), the reply bodies of
// ops 5, 19 and 21, and the HTTP API. They are snake_case strings.
const (
	CodeUnauthorized     = "unauthorized"
	CodeBadCredentials   = "bad_credentials"
	CodePacketTooLarge   = "packet_too_large"
	CodeProtocolError    = "protocol_error"
	CodeUnknownOp        = "unknown_op"
	CodeSlowConsumer     = "slow_consumer"
	CodeServerDraining   = "server_draining"
	CodeReplaced         = "replaced"
	CodeIdleTimeout      = "idle_timeout"
	CodeHandshakeTimeout = "handshake_timeout"
	CodeTooManyConns     = "too_many_connections"
	CodeBadRequest       = "bad_request"
	CodeNotFound         = "not_found"
	CodeForbidden        = "forbidden"
	CodeNotFriends       = "not_friends"
	CodeBlocked          = "blocked"
	CodeNotMember        = "not_member"
	CodeMuted            = "muted"
	CodeTooLarge         = "too_large"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	CodeUsernameTaken    = "username_taken"
	CodeConflict         = "conflict"
	CodeKicked           = "kicked"
)
