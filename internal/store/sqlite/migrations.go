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
}
