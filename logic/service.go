package logic

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/snowflake"
	"github.com/goimdev/goim/internal/store"
)

// Deps are the backends the service uses; all are required except Cache.
type Deps struct {
	Store    store.Store
	Issuer   *auth.Issuer
	Sessions session.Registry
	Bus      bus.Bus
	// Cache, when set, is told about every relation change the service
	// makes (see RelationCache). Nil: no cache to invalidate.
	Cache RelationCache
	// Checker answers the relation lookups of the message path (block
	// list, friendship, membership). Nil: Cache when it implements
	// RelationChecker (internal/relcache's Cache does), else the store.
	Checker RelationChecker
	// Messages is the message store. Nil: Store, which must then
	// implement store.Messages.
	Messages store.Messages
	// IDs generates msg ids. Nil: a generator for Config.SnowflakeNode.
	IDs *snowflake.Generator
	// MessageCache, when set, serves history and Sync pages of hot
	// conversations and is told about every commit and recall (see
	// MessageCache). Nil: the store answers every page.
	MessageCache MessageCache
	// Unread, when set, mirrors unread counts (internal/unread on Redis):
	// the conversation list's counts and total come from it. Nil: the
	// store answers them.
	Unread UnreadCounter
}

// Service is the logic service. It owns none of its Deps: closing them is
// the caller's job. Its only goroutines are the message committer and
// fan-out stage, started by the first message sent and stopped by Close
// (call Close before closing the store). It is safe for concurrent use.
type Service struct {
	cfg      Config
	store    store.Store
	issuer   *auth.Issuer
	sessions session.Registry
	bus      bus.Bus
	rel      relStore      // the store's relation side (deps.Store)
	cache    RelationCache // never nil (noCache when Deps.Cache is nil)
	limiter  *windowLimiter
	log      *slog.Logger
	hasher   *auth.PasswordHasher
	now      func() time.Time
	ops      map[int32]opHandler // Receive dispatch table, fixed after New
	handler  http.Handler

	// Messaging (send.go, committer.go).
	msgs        store.Messages
	msgCache    MessageCache  // nil: none
	unread      UnreadCounter // nil: the store counts
	checker     RelationChecker
	ids         *snowflake.Generator
	sendLimit   *tokenLimiter // nil: no limit
	typing      *intervalLimiter
	users       knownUsers
	memberLists memberLists
	large       largeEntries // convlist.go
	commit      committer
}

var _ comet.Logic = (*Service)(nil)

// New returns a service with cfg (zero fields take their defaults).
func New(cfg Config, deps Deps, log *slog.Logger) (*Service, error) {
	if deps.Store == nil || deps.Issuer == nil || deps.Sessions == nil || deps.Bus == nil {
		return nil, errors.New("logic: Deps.Store, Issuer, Sessions and Bus are required")
	}
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	hasher, err := auth.NewPasswordHasher(cfg.Password)
	if err != nil {
		return nil, fmt.Errorf("logic: %w", err)
	}
	s := &Service{
		cfg:      cfg,
		store:    deps.Store,
		issuer:   deps.Issuer,
		sessions: deps.Sessions,
		bus:      deps.Bus,
		rel:      deps.Store,
		cache:    deps.Cache,
		log:      log.With("component", "logic", "node", cfg.Node),
		hasher:   hasher,
		now:      time.Now,
	}
	if s.cache == nil {
		s.cache = noCache{}
	}
	s.msgs = deps.Messages
	if s.msgs == nil {
		m, ok := deps.Store.(store.Messages)
		if !ok {
			return nil, errors.New("logic: Deps.Messages is nil and Deps.Store does not implement store.Messages")
		}
		s.msgs = m
	}
	s.msgCache = deps.MessageCache
	s.unread = deps.Unread
	s.checker = deps.Checker
	if s.checker == nil {
		if c, ok := deps.Cache.(RelationChecker); ok {
			s.checker = c
		} else {
			s.checker = storeChecker{deps.Store}
		}
	}
	s.ids = deps.IDs
	if s.ids == nil {
		if s.ids, err = snowflake.New(cfg.SnowflakeNode); err != nil {
			return nil, fmt.Errorf("logic: %w", err)
		}
	}
	if cfg.SendRate > 0 {
		s.sendLimit = newTokenLimiter(cfg.SendRate, cfg.SendBurst)
	}
	s.typing = newIntervalLimiter(cfg.TypingInterval)
	s.commit.init(s)
	if cfg.FriendRequestLimit > 0 {
		s.limiter = newWindowLimiter(cfg.FriendRequestLimit, cfg.FriendRequestWindow)
	}
	s.ops = s.opHandlers()
	s.handler = s.routes()
	if cfg.InsecureMidAuth {
		s.log.Warn("INSECURE: insecure_mid_auth is on: any client can connect as any user id with goim's legacy {\"mid\":N} auth body; use only for benchmarks")
	}
	if cfg.AdminKey == "" {
		s.log.Info("push API has no admin key: serving loopback clients only")
	} else if len(cfg.AdminKey) < 16 {
		s.log.Warn("push API admin key is shorter than 16 characters")
	}
	return s, nil
}

// Handler returns the HTTP API: /api/v1/... for apps and /goim/... for
// business services.
func (s *Service) Handler() http.Handler { return s.handler }
