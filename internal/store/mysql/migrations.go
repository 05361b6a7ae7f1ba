package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/goimdev/goim/internal/store/migrate"
)

// tableOptions ends every CREATE TABLE: InnoDB (row locks, foreign keys,
// transactions), utf8mb4 with a case-insensitive collation for free text.
// Columns compared byte for byte (usernames, device ids) are VARBINARY.
const tableOptions = ` ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`

// Migrations is the MySQL schema history. Append only: never edit a
// migration that has shipped. DDL commits implicitly in MySQL, so every
// statement is written to be re-runnable (IF NOT EXISTS) in case a
// migration stopped half way.
//
// Times are DATETIME(3) in UTC. Rows of the synced lists are never deleted:
// a status column marks tombstones and version records the list version at
// which the row last changed, so "what changed since V" is an index range.
var Migrations = []migrate.Migration{
	{
		Version: 1,
		Name:    "users and devices",
		Statements: []string{
			// username is VARBINARY: the unique key and lookups are exact
			// byte matches (a _bin collation would still ignore trailing
			// spaces, being PAD SPACE).
			`CREATE TABLE IF NOT EXISTS user (
				id            BIGINT         NOT NULL AUTO_INCREMENT,
				username      VARBINARY(32)  NOT NULL,
				password_hash VARCHAR(255)   NOT NULL,
				nickname      VARCHAR(255)   NOT NULL DEFAULT '',
				avatar        VARCHAR(1024)  NOT NULL DEFAULT '',
				created_at    DATETIME(3)    NOT NULL,
				updated_at    DATETIME(3)    NOT NULL,
				PRIMARY KEY (id),
				UNIQUE KEY uk_user_username (username)
			)` + tableOptions,
			`CREATE TABLE IF NOT EXISTS device (
				user_id       BIGINT         NOT NULL,
				device_id     VARBINARY(128) NOT NULL,
				platform      VARCHAR(16)    NOT NULL DEFAULT '',
				created_at    DATETIME(3)    NOT NULL,
				last_login_at DATETIME(3)    NOT NULL,
				PRIMARY KEY (user_id, device_id),
				KEY idx_device_user_login (user_id, last_login_at),
				CONSTRAINT fk_device_user FOREIGN KEY (user_id) REFERENCES user (id) ON DELETE CASCADE
			)` + tableOptions,
		},
	},
	{
		Version: 2,
		Name:    "friends, blocks and groups",
		Statements: []string{
			// Per-user list versions: kind 1 = friend list, 2 = group list.
			// A transaction changing a list locks its row first, which also
			// serialises the changes of one user's list. min_version is the
			// oldest version still answerable incrementally (raised when
			// tombstones are pruned); a group's member list keeps both in
			// the group row.
			`CREATE TABLE IF NOT EXISTS list_version (
				user_id     BIGINT  NOT NULL,
				kind        TINYINT NOT NULL,
				version     BIGINT  NOT NULL,
				min_version BIGINT  NOT NULL DEFAULT 0,
				PRIMARY KEY (user_id, kind),
				CONSTRAINT fk_list_version_user FOREIGN KEY (user_id) REFERENCES user (id) ON DELETE CASCADE
			)` + tableOptions,
			// status 0 pending, 1 accepted, 2 rejected. pending is NULL once
			// resolved, so the unique key allows one pending request per
			// direction and any number of resolved ones.
			`CREATE TABLE IF NOT EXISTS friend_request (
				id         BIGINT        NOT NULL AUTO_INCREMENT,
				from_user  BIGINT        NOT NULL,
				to_user    BIGINT        NOT NULL,
				message    VARCHAR(1024) NOT NULL DEFAULT '',
				status     TINYINT       NOT NULL DEFAULT 0,
				pending    TINYINT       AS (IF(status = 0, 1, NULL)) STORED,
				created_at DATETIME(3)   NOT NULL,
				updated_at DATETIME(3)   NOT NULL,
				PRIMARY KEY (id),
				UNIQUE KEY uk_friend_request_pending (from_user, to_user, pending),
				KEY idx_friend_request_from (from_user, updated_at),
				KEY idx_friend_request_to (to_user, updated_at),
				CONSTRAINT fk_friend_request_from FOREIGN KEY (from_user) REFERENCES user (id) ON DELETE CASCADE,
				CONSTRAINT fk_friend_request_to FOREIGN KEY (to_user) REFERENCES user (id) ON DELETE CASCADE
			)` + tableOptions,
			// One row per direction: (a, b) is a's view of b with a's remark;
			// version is a's friend-list version. status 0 friends, 1 deleted.
			`CREATE TABLE IF NOT EXISTS friendship (
				user_id    BIGINT       NOT NULL,
				friend_id  BIGINT       NOT NULL,
				remark     VARCHAR(255) NOT NULL DEFAULT '',
				status     TINYINT      NOT NULL DEFAULT 0,
				version    BIGINT       NOT NULL,
				created_at DATETIME(3)  NOT NULL,
				updated_at DATETIME(3)  NOT NULL,
				PRIMARY KEY (user_id, friend_id),
				KEY idx_friendship_version (user_id, version),
				KEY idx_friendship_friend (friend_id),
				KEY idx_friendship_tombstones (status, updated_at),
				CONSTRAINT fk_friendship_user FOREIGN KEY (user_id) REFERENCES user (id) ON DELETE CASCADE,
				CONSTRAINT fk_friendship_friend FOREIGN KEY (friend_id) REFERENCES user (id) ON DELETE CASCADE
			)` + tableOptions,
			"CREATE TABLE IF NOT EXISTS `block` (" + `
				user_id    BIGINT      NOT NULL,
				blocked_id BIGINT      NOT NULL,
				created_at DATETIME(3) NOT NULL,
				PRIMARY KEY (user_id, blocked_id),
				KEY idx_block_list (user_id, created_at),
				KEY idx_block_blocked (blocked_id),
				CONSTRAINT fk_block_user FOREIGN KEY (user_id) REFERENCES user (id) ON DELETE CASCADE,
				CONSTRAINT fk_block_blocked FOREIGN KEY (blocked_id) REFERENCES user (id) ON DELETE CASCADE
			)` + tableOptions,
			// status 0 active, 1 dismissed. version is the member-list version.
			"CREATE TABLE IF NOT EXISTS `group` (" + `
				id           BIGINT        NOT NULL AUTO_INCREMENT,
				owner_id     BIGINT        NOT NULL,
				name         VARCHAR(255)  NOT NULL DEFAULT '',
				avatar       VARCHAR(1024) NOT NULL DEFAULT '',
				announcement TEXT          NOT NULL,
				max_members  INT           NOT NULL,
				mute_all     TINYINT       NOT NULL DEFAULT 0,
				status       TINYINT       NOT NULL DEFAULT 0,
				member_count INT           NOT NULL DEFAULT 0,
				version      BIGINT        NOT NULL DEFAULT 0,
				min_version  BIGINT        NOT NULL DEFAULT 0,
				created_at   DATETIME(3)   NOT NULL,
				updated_at   DATETIME(3)   NOT NULL,
				PRIMARY KEY (id),
				KEY idx_group_owner (owner_id),
				CONSTRAINT fk_group_owner FOREIGN KEY (owner_id) REFERENCES user (id)
			)` + tableOptions,
			// role 0 member, 1 admin, 2 owner; status 0 member, 1 removed
			// (a tombstone); version is the group's member-list version.
			`CREATE TABLE IF NOT EXISTS group_member (
				group_id    BIGINT       NOT NULL,
				user_id     BIGINT       NOT NULL,
				role        TINYINT      NOT NULL DEFAULT 0,
				nickname    VARCHAR(255) NOT NULL DEFAULT '',
				muted_until DATETIME(3)  NULL,
				status      TINYINT      NOT NULL DEFAULT 0,
				version     BIGINT       NOT NULL,
				joined_at   DATETIME(3)  NOT NULL,
				updated_at  DATETIME(3)  NOT NULL,
				PRIMARY KEY (group_id, user_id),
				KEY idx_group_member_version (group_id, version),
				KEY idx_group_member_user (user_id),
				KEY idx_group_member_tombstones (status, updated_at),
				CONSTRAINT fk_group_member_group FOREIGN KEY (group_id) REFERENCES ` + "`group`" + ` (id) ON DELETE CASCADE,
				CONSTRAINT fk_group_member_user FOREIGN KEY (user_id) REFERENCES user (id) ON DELETE CASCADE
			)` + tableOptions,
			// A user's group list: status 0 member, 1 left / kicked /
			// dismissed; version is the user's group-list version.
			`CREATE TABLE IF NOT EXISTS user_group (
				user_id    BIGINT      NOT NULL,
				group_id   BIGINT      NOT NULL,
				status     TINYINT     NOT NULL DEFAULT 0,
				version    BIGINT      NOT NULL,
				updated_at DATETIME(3) NOT NULL,
				PRIMARY KEY (user_id, group_id),
				KEY idx_user_group_version (user_id, version),
				KEY idx_user_group_group (group_id, status),
				KEY idx_user_group_tombstones (status, updated_at),
				CONSTRAINT fk_user_group_user FOREIGN KEY (user_id) REFERENCES user (id) ON DELETE CASCADE,
				CONSTRAINT fk_user_group_group FOREIGN KEY (group_id) REFERENCES ` + "`group`" + ` (id) ON DELETE CASCADE
			)` + tableOptions,
		},
	},
	{
		// Messages live in month tables message_YYYYMM (by the message's
		// created_at, UTC), created on demand from message_template with
		// CREATE TABLE ... LIKE. Tables shared by every month:
		//   - conversation: the seq counter (max_seq), locked and raised in
		//     the transaction that inserts the messages, and the last
		//     message (id and time, hence its month table);
		//   - conversation_month: which months hold a conversation's seqs
		//     (min_seq..max_seq per month), so a page spanning months reads
		//     exactly the tables it needs;
		//   - message_ref: msg_id -> (conversation, seq, month) and the
		//     global unique key (sender_id, client_msg_id) that makes
		//     sending idempotent across months (a unique key of a month
		//     table only covers its month);
		//   - user_conversation: a user's conversation index; unread is
		//     exact up to last_seq, messages after it (read diffusion) are
		//     counted when read;
		//   - delivery_cursor: each device's delivered cursor.
		Version: 3,
		Name:    "messages and conversations",
		Statements: []string{
			`CREATE TABLE IF NOT EXISTS conversation (
				id          VARBINARY(48) NOT NULL,
				kind        TINYINT       NOT NULL,
				max_seq     BIGINT        NOT NULL,
				last_msg_id BIGINT        NOT NULL,
				last_msg_at DATETIME(3)   NOT NULL,
				created_at  DATETIME(3)   NOT NULL,
				updated_at  DATETIME(3)   NOT NULL,
				PRIMARY KEY (id)
			)` + tableOptions,
			`CREATE TABLE IF NOT EXISTS conversation_month (
				conversation_id VARBINARY(48) NOT NULL,
				month           INT           NOT NULL,
				min_seq         BIGINT        NOT NULL,
				max_seq         BIGINT        NOT NULL,
				PRIMARY KEY (conversation_id, month)
			)` + tableOptions,
			`CREATE TABLE IF NOT EXISTS message_ref (
				id              BIGINT        NOT NULL,
				sender_id       BIGINT        NOT NULL,
				client_msg_id   VARBINARY(64) NULL,
				conversation_id VARBINARY(48) NOT NULL,
				seq             BIGINT        NOT NULL,
				month           INT           NOT NULL,
				created_at      DATETIME(3)   NOT NULL,
				PRIMARY KEY (id),
				UNIQUE KEY uk_message_ref_client (sender_id, client_msg_id)
			)` + tableOptions,
			`CREATE TABLE IF NOT EXISTS message_template (
				id              BIGINT          NOT NULL,
				conversation_id VARBINARY(48)   NOT NULL,
				seq             BIGINT          NOT NULL,
				sender_id       BIGINT          NOT NULL,
				receiver_id     BIGINT          NOT NULL DEFAULT 0,
				group_id        BIGINT          NOT NULL DEFAULT 0,
				msg_type        INT             NOT NULL,
				content         MEDIUMBLOB      NOT NULL,
				client_msg_id   VARBINARY(64)   NULL,
				mentions        VARBINARY(2200) NOT NULL DEFAULT '',
				status          TINYINT         NOT NULL DEFAULT 0,
				created_at      DATETIME(3)     NOT NULL,
				PRIMARY KEY (id),
				UNIQUE KEY uk_message_conversation_seq (conversation_id, seq),
				UNIQUE KEY uk_message_sender_client (sender_id, client_msg_id),
				KEY idx_message_conversation_created (conversation_id, created_at)
			)` + tableOptions,
			`CREATE TABLE IF NOT EXISTS user_conversation (
				user_id         BIGINT        NOT NULL,
				conversation_id VARBINARY(48) NOT NULL,
				read_seq        BIGINT        NOT NULL DEFAULT 0,
				delivered_seq   BIGINT        NOT NULL DEFAULT 0,
				last_seq        BIGINT        NOT NULL DEFAULT 0,
				unread          BIGINT        NOT NULL DEFAULT 0,
				muted           TINYINT       NOT NULL DEFAULT 0,
				updated_at      DATETIME(3)   NOT NULL,
				PRIMARY KEY (user_id, conversation_id),
				KEY idx_user_conversation_read (conversation_id, read_seq)
			)` + tableOptions,
			`CREATE TABLE IF NOT EXISTS delivery_cursor (
				user_id         BIGINT         NOT NULL,
				conversation_id VARBINARY(48)  NOT NULL,
				device_key      VARBINARY(128) NOT NULL,
				delivered_seq   BIGINT         NOT NULL,
				updated_at      DATETIME(3)    NOT NULL,
				PRIMARY KEY (user_id, conversation_id, device_key)
			)` + tableOptions,
		},
	},
}

// newDialect returns the MySQL migration dialect: DDL is not transactional,
// so runners are serialised by a named lock (GET_LOCK, held by the
// migrating connection and released by RELEASE_LOCK or when the
// connection drops) scoped to the database.
func newDialect(lockTimeout time.Duration) migrate.Dialect {
	return migrate.Dialect{
		Name: "mysql",
		CreateTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT       NOT NULL,
			name       VARCHAR(255) NOT NULL,
			applied_at BIGINT       NOT NULL,
			PRIMARY KEY (version)
		)` + tableOptions,
		TransactionalDDL: false,
		Lock: func(ctx context.Context, conn *sql.Conn) (func() error, error) {
			return getLock(ctx, conn, lockTimeout)
		},
	}
}

// migrateLockName is the GET_LOCK name: per database, at most 64
// characters.
const migrateLockName = "LEFT(CONCAT('goim.migrate.', DATABASE()), 64)"

func getLock(ctx context.Context, conn *sql.Conn, timeout time.Duration) (func() error, error) {
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	secs := max(1, int64(math.Ceil(timeout.Seconds())))
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+migrateLockName+", ?)", secs).Scan(&got); err != nil {
		return nil, err
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("another process holds the migration lock (waited %ds)", secs)
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var released sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK("+migrateLockName+")").Scan(&released); err != nil {
			return err
		}
		if !released.Valid || released.Int64 != 1 {
			return fmt.Errorf("migration lock was not held at release")
		}
		return nil
	}, nil
}
