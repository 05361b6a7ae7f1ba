// Package mysql is the MySQL implementation of the store of record
// (store.Store plus the relation stores of store.Friends, store.Blocks and
// store.Groups) for the distributed mode, on github.com/go-sql-driver/mysql.
// It works on MySQL 8 and MariaDB 10.6+: InnoDB tables in utf8mb4, times as
// DATETIME(3) in UTC, schema migrations applied at Open under a GET_LOCK
// so that concurrent starts do not race, and read-committed transactions
// whose rules are held by row locks (SELECT ... FOR UPDATE) and retried on
// deadlock.
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/internal/store/migrate"
)

// Config configures a Store.
type Config struct {
	// DSN is the go-sql-driver/mysql data source name, e.g.
	// "goim:secret@tcp(127.0.0.1:3306)/goim". Open forces parseTime, UTC,
	// the utf8mb4 charset and client-side parameter interpolation
	// whatever the DSN says. Required.
	DSN string `yaml:"dsn"`
	// MaxOpenConns bounds the pool (default 32: MySQL serves a few dozen
	// concurrent queries per core well; more only queue in the server).
	MaxOpenConns int `yaml:"max_open_conns"`
	// MaxIdleConns is how many idle connections are kept (default 32, the
	// same as MaxOpenConns so that a busy pool never reconnects).
	MaxIdleConns int `yaml:"max_idle_conns"`
	// ConnMaxLifetime recycles connections (default 30m: below MySQL's
	// wait_timeout of 8h and short enough to follow a failover or a
	// load balancer's rebalancing).
	ConnMaxLifetime time.Duration `yaml:"conn_max_lifetime"`
	// ConnMaxIdleTime closes connections idle this long (default 5m).
	ConnMaxIdleTime time.Duration `yaml:"conn_max_idle_time"`
	// DialTimeout bounds connecting (default 5s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// MigrateLockTimeout is how long Open and Migrate wait for another
	// process's migration to finish (default 60s).
	MigrateLockTimeout time.Duration `yaml:"migrate_lock_timeout"`
}

// DefaultConfig returns the defaults documented on Config (DSN empty).
func DefaultConfig() Config {
	return Config{
		MaxOpenConns:       32,
		MaxIdleConns:       32,
		ConnMaxLifetime:    30 * time.Minute,
		ConnMaxIdleTime:    5 * time.Minute,
		DialTimeout:        5 * time.Second,
		MigrateLockTimeout: 60 * time.Second,
	}
}

// maxDeadlockRetries is how many times a transaction that lost a deadlock
// (or whose snapshot was invalidated) is re-run before the error is
// returned.
const maxDeadlockRetries = 5

// Store is the MySQL store of record.
type Store struct {
	db      *sql.DB
	dialect migrate.Dialect

	// Prepared hot-path statements (the send path's relation checks on a
	// cache miss): parsed once per connection by the server, executed in
	// one round trip with fewer allocations than an interpolated query.
	userByID, userByName      *sql.Stmt
	friend, isBlocked, member *sql.Stmt
	groupByID                 *sql.Stmt

	months monthTables // the message_YYYYMM tables known to exist
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Friends = (*Store)(nil)
	_ store.Blocks  = (*Store)(nil)
	_ store.Groups  = (*Store)(nil)
)

// Open connects with DefaultConfig and dsn, and applies pending
// migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	c := DefaultConfig()
	c.DSN = dsn
	return OpenConfig(ctx, c)
}

// OpenConfig connects with c (zero fields take their defaults) and applies
// pending migrations.
func OpenConfig(ctx context.Context, c Config) (*Store, error) {
	c = c.withDefaults()
	cfg, err := driverConfig(c)
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(c.MaxOpenConns)
	db.SetMaxIdleConns(c.MaxIdleConns)
	db.SetConnMaxLifetime(c.ConnMaxLifetime)
	db.SetConnMaxIdleTime(c.ConnMaxIdleTime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql: connect %s@%s/%s: %w", cfg.User, cfg.Addr, cfg.DBName, err)
	}
	s := &Store{db: db, dialect: newDialect(c.MigrateLockTimeout)}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxOpenConns <= 0 {
		c.MaxOpenConns = d.MaxOpenConns
	}
	if c.MaxIdleConns <= 0 {
		c.MaxIdleConns = min(d.MaxIdleConns, c.MaxOpenConns)
	}
	if c.ConnMaxLifetime <= 0 {
		c.ConnMaxLifetime = d.ConnMaxLifetime
	}
	if c.ConnMaxIdleTime <= 0 {
		c.ConnMaxIdleTime = d.ConnMaxIdleTime
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.MigrateLockTimeout <= 0 {
		c.MigrateLockTimeout = d.MigrateLockTimeout
	}
	return c
}

// driverConfig parses c.DSN and forces the settings the store relies on.
func driverConfig(c Config) (*mysql.Config, error) {
	if c.DSN == "" {
		return nil, errors.New("mysql: empty DSN")
	}
	cfg, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql: bad DSN: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysql: the DSN names no database")
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// utf8mb4 for the whole connection (the columns are utf8mb4 too).
	if err := cfg.Apply(mysql.Charset("utf8mb4", "utf8mb4_unicode_ci")); err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	// One round trip per ad-hoc query instead of prepare/execute/close;
	// safe with utf8mb4. Hot paths use prepared statements anyway.
	cfg.InterpolateParams = true
	cfg.MultiStatements = false
	cfg.ClientFoundRows = false                     // RowsAffected counts changed rows
	cfg.Apply(mysql.TimeTruncate(time.Millisecond)) //nolint:errcheck // never fails
	if cfg.Timeout == 0 {
		cfg.Timeout = c.DialTimeout
	}
	cfg.Logger = slogLogger{}
	return cfg, nil
}

// slogLogger sends the driver's rare critical messages (e.g. a broken
// connection) to slog.
type slogLogger struct{}

func (slogLogger) Print(v ...any) {
	slog.Warn("mysql driver: " + fmt.Sprint(v...))
}

// DB returns the underlying pool (for tests and tools).
func (s *Store) DB() *sql.DB { return s.db }

// Migrate applies pending schema migrations.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := migrate.Run(ctx, s.db, s.dialect, Migrations); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}

func (s *Store) prepare(ctx context.Context) error {
	stmts := []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.userByID, "SELECT " + userCols + " FROM user WHERE id = ?"},
		{&s.userByName, "SELECT " + userCols + " FROM user WHERE username = ?"},
		{&s.friend, "SELECT " + friendCols + " FROM friendship WHERE user_id = ? AND friend_id = ? AND status = 0"},
		{&s.isBlocked, "SELECT 1 FROM `block` WHERE user_id = ? AND blocked_id = ?"},
		{&s.member, "SELECT " + memberCols + " FROM group_member WHERE group_id = ? AND user_id = ? AND status = 0"},
		{&s.groupByID, "SELECT " + groupCols + " FROM `group` WHERE id = ?"},
	}
	for _, st := range stmts {
		p, err := s.db.PrepareContext(ctx, st.q)
		if err != nil {
			return fmt.Errorf("mysql: prepare %q: %w", st.q, err)
		}
		*st.dst = p
	}
	return nil
}

// Close closes the statements and the pool.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.userByID, s.userByName, s.friend, s.isBlocked, s.member, s.groupByID} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(append(errs, s.db.Close())...)
}

// inTx runs fn in a read-committed transaction, retrying it when it loses
// a deadlock. fn must have no effects outside the transaction.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.tryTx(ctx, fn)
		if err == nil {
			return nil
		}
		if isRetryable(err) && attempt < maxDeadlockRetries && ctx.Err() == nil {
			txRetries.Inc()
			continue
		}
		if isStoreErr(err) {
			return err
		}
		return fmt.Errorf("mysql: %s: %w", what, err)
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback() //nolint:errcheck // the fn error is the one to report
		return err
	}
	return tx.Commit()
}

// isStoreErr reports whether err is (wraps) one of the store's sentinel
// errors, returned as they are rather than wrapped again.
func isStoreErr(err error) bool {
	for _, e := range []error{store.ErrNotFound, store.ErrInvalid, store.ErrUsernameTaken,
		store.ErrConflict, store.ErrGroupFull, store.ErrGroupDismissed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// MySQL server error numbers the store handles.
const (
	erDupEntry          = 1062 // ER_DUP_ENTRY
	erLockDeadlock      = 1213 // ER_LOCK_DEADLOCK
	erNoReferencedRow2  = 1452 // ER_NO_REFERENCED_ROW_2: foreign key parent missing
	erCheckpointNotRead = 1020 // ER_CHECKREAD: record changed since last read (MariaDB snapshot isolation)
)

func mysqlErrNo(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func isRetryable(err error) bool {
	n := mysqlErrNo(err)
	return n == erLockDeadlock || n == erCheckpointNotRead
}

func isDuplicate(err error) bool { return mysqlErrNo(err) == erDupEntry }

func isForeignKeyViolation(err error) bool { return mysqlErrNo(err) == erNoReferencedRow2 }

// ms truncates t to the millisecond precision of DATETIME(3), in UTC.
func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

// now is the current time at the stored precision.
func now() time.Time { return ms(time.Now()) }

type rowScanner interface{ Scan(dest ...any) error }

// execer is what *sql.DB and *sql.Tx share.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}
