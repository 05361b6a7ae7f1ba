package sqlite

import "github.com/goimdev/goim/internal/store/migrate"

// Migrations is the SQLite schema history. Append only: never edit a
// migration that has shipped. Times are unix milliseconds.
var Migrations = []migrate.Migration{
	{
		Version: 1,
		Name:    "users and devices",
		Statements: []string{
			`CREATE TABLE users (
				id            INTEGER PRIMARY KEY AUTOINCREMENT,
				username      TEXT    NOT NULL UNIQUE,
				password_hash TEXT    NOT NULL,
				nickname      TEXT    NOT NULL DEFAULT '',
				avatar        TEXT    NOT NULL DEFAULT '',
				created_at    INTEGER NOT NULL,
				updated_at    INTEGER NOT NULL
			)`,
			`CREATE TABLE devices (
				user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
				device_id     TEXT    NOT NULL,
				platform      TEXT    NOT NULL DEFAULT '',
				created_at    INTEGER NOT NULL,
				last_login_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, device_id)
			) WITHOUT ROWID`,
			`CREATE INDEX devices_user_login ON devices (user_id, last_login_at DESC)`,
		},
	},
	{
		// Versioned lists: every change to a friend list, a user's group
		// list or a group's member list bumps that list's version in the
		// same transaction and stamps the changed rows with it; deletions
		// are tombstones (status 1) until PruneTombstones removes them and
		// raises the list's min_version (the oldest version still
		// answerable incrementally). The friend and group lists of a user
		// keep their counters in list_versions (kind 1 friends, 2 groups);
		// a group's member list keeps them in groups (version, min_version).
		Version: 2,
		Name:    "friends, blocks and groups",
		Statements: []string{
			`CREATE TABLE list_versions (
				kind        INTEGER NOT NULL,
				owner_id    INTEGER NOT NULL,
				version     INTEGER NOT NULL,
				min_version INTEGER NOT NULL DEFAULT 0,
				PRIMARY KEY (kind, owner_id)
			) WITHOUT ROWID`,
			`CREATE TABLE friend_requests (
				id         INTEGER PRIMARY KEY AUTOINCREMENT,
				from_user  INTEGER NOT NULL REFERENCES users(id),
				to_user    INTEGER NOT NULL REFERENCES users(id),
				message    TEXT    NOT NULL DEFAULT '',
				status     INTEGER NOT NULL DEFAULT 0, -- 0 pending, 1 accepted, 2 rejected
				created_at INTEGER NOT NULL,
				updated_at INTEGER NOT NULL
			)`,
			// At most one pending request per direction.
			`CREATE UNIQUE INDEX friend_requests_pending ON friend_requests (from_user, to_user) WHERE status = 0`,
			`CREATE INDEX friend_requests_to ON friend_requests (to_user, updated_at DESC)`,
			`CREATE INDEX friend_requests_from ON friend_requests (from_user, updated_at DESC)`,
			`CREATE TABLE friendships (
				user_id    INTEGER NOT NULL REFERENCES users(id),
				friend_id  INTEGER NOT NULL REFERENCES users(id),
				remark     TEXT    NOT NULL DEFAULT '',
				status     INTEGER NOT NULL DEFAULT 0, -- 0 friends, 1 deleted (tombstone)
				version    INTEGER NOT NULL,
				created_at INTEGER NOT NULL,
				updated_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, friend_id)
			) WITHOUT ROWID`,
			`CREATE INDEX friendships_version ON friendships (user_id, version)`,
			`CREATE INDEX friendships_tombstones ON friendships (updated_at) WHERE status = 1`,
			`CREATE TABLE blocks (
				user_id    INTEGER NOT NULL REFERENCES users(id),
				blocked_id INTEGER NOT NULL REFERENCES users(id),
				created_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, blocked_id)
			) WITHOUT ROWID`,
			`CREATE INDEX blocks_user_created ON blocks (user_id, created_at DESC)`,
			`CREATE TABLE groups (
				id           INTEGER PRIMARY KEY AUTOINCREMENT,
				owner_id     INTEGER NOT NULL REFERENCES users(id),
				name         TEXT    NOT NULL,
				avatar       TEXT    NOT NULL DEFAULT '',
				announcement TEXT    NOT NULL DEFAULT '',
				max_members  INTEGER NOT NULL,
				mute_all     INTEGER NOT NULL DEFAULT 0,
				status       INTEGER NOT NULL DEFAULT 0, -- 0 normal, 1 dismissed
				member_count INTEGER NOT NULL DEFAULT 0,
				version      INTEGER NOT NULL DEFAULT 0, -- the member list's version
				min_version  INTEGER NOT NULL DEFAULT 0, -- and its oldest answerable one
				created_at   INTEGER NOT NULL,
				updated_at   INTEGER NOT NULL
			)`,
			`CREATE TABLE group_members (
				group_id    INTEGER NOT NULL REFERENCES groups(id),
				user_id     INTEGER NOT NULL REFERENCES users(id),
				role        INTEGER NOT NULL DEFAULT 0, -- 0 member, 1 admin, 2 owner
				nickname    TEXT    NOT NULL DEFAULT '',
				muted_until INTEGER NOT NULL DEFAULT 0, -- unix ms, 0 not muted
				status      INTEGER NOT NULL DEFAULT 0, -- 0 member, 1 left/kicked (tombstone)
				version     INTEGER NOT NULL,
				joined_at   INTEGER NOT NULL,
				updated_at  INTEGER NOT NULL,
				PRIMARY KEY (group_id, user_id)
			) WITHOUT ROWID`,
			`CREATE INDEX group_members_version ON group_members (group_id, version)`,
			`CREATE INDEX group_members_tombstones ON group_members (updated_at) WHERE status = 1`,
			`CREATE TABLE user_groups (
				user_id    INTEGER NOT NULL REFERENCES users(id),
				group_id   INTEGER NOT NULL REFERENCES groups(id),
				status     INTEGER NOT NULL DEFAULT 0, -- 0 member, 1 left/kicked/dismissed (tombstone)
				version    INTEGER NOT NULL,
				updated_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, group_id)
			) WITHOUT ROWID`,
			`CREATE INDEX user_groups_version ON user_groups (user_id, version)`,
			`CREATE INDEX user_groups_group ON user_groups (group_id, status)`,
			`CREATE INDEX user_groups_tombstones ON user_groups (updated_at) WHERE status = 1`,
		},
	},
	{
		// Messages are stored once per conversation; conversations holds
		// the seq counter (max_seq, raised in the same transaction as the
		// inserts). user_conversations is a user's conversation index:
		// unread is exact for the messages up to last_seq (write
		// diffusion advances it with every message naming the user); the
		// messages after last_seq (read diffusion) are counted when read.
		// delivery_cursors holds the delivered cursor of each device.
		// Messages have no foreign keys: the send path checked the users,
		// and foreign key checks would cost every insert. There is no
		// (conversation_id, created_at) index: pages go by seq, which
		// follows time within a conversation, and that index cost a third
		// of the append throughput (BenchmarkAppendMessages, 512/batch:
		// 19k -> 31k msgs/s when dropped).
		Version: 3,
		Name:    "messages and conversations",
		Statements: []string{
			`CREATE TABLE conversations (
				id          TEXT    PRIMARY KEY,
				kind        INTEGER NOT NULL, -- 1 one-to-one, 2 group
				max_seq     INTEGER NOT NULL,
				last_msg_id INTEGER NOT NULL,
				created_at  INTEGER NOT NULL,
				updated_at  INTEGER NOT NULL
			) WITHOUT ROWID`,
			`CREATE TABLE messages (
				id              INTEGER PRIMARY KEY, -- Snowflake msg_id
				conversation_id TEXT    NOT NULL,
				seq             INTEGER NOT NULL,
				sender_id       INTEGER NOT NULL,
				receiver_id     INTEGER NOT NULL DEFAULT 0,
				group_id        INTEGER NOT NULL DEFAULT 0,
				msg_type        INTEGER NOT NULL,
				content         BLOB    NOT NULL,
				client_msg_id   TEXT,             -- NULL for none (NULLs never collide)
				mentions        TEXT    NOT NULL DEFAULT '',
				status          INTEGER NOT NULL DEFAULT 0, -- 0 normal, 1 recalled
				created_at      INTEGER NOT NULL
			)`,
			`CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq)`,
			`CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id)`,
			`CREATE TABLE user_conversations (
				user_id         INTEGER NOT NULL,
				conversation_id TEXT    NOT NULL,
				read_seq        INTEGER NOT NULL DEFAULT 0,
				delivered_seq   INTEGER NOT NULL DEFAULT 0,
				last_seq        INTEGER NOT NULL DEFAULT 0, -- unread is exact up to here
				unread          INTEGER NOT NULL DEFAULT 0,
				muted           INTEGER NOT NULL DEFAULT 0,
				updated_at      INTEGER NOT NULL,
				PRIMARY KEY (user_id, conversation_id)
			) WITHOUT ROWID`,
			`CREATE INDEX user_conversations_read ON user_conversations (conversation_id, read_seq)`,
			`CREATE TABLE delivery_cursors (
				user_id         INTEGER NOT NULL,
				conversation_id TEXT    NOT NULL,
				device_key      TEXT    NOT NULL,
				delivered_seq   INTEGER NOT NULL,
				updated_at      INTEGER NOT NULL,
				PRIMARY KEY (user_id, conversation_id, device_key)
			) WITHOUT ROWID`,
		},
	},
}
