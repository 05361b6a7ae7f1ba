package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/protocol"
)

// Deps are the job stage's collaborators.
type Deps struct {
	Bus      bus.Bus          // source of bus.TopicPush
	Sessions session.Registry // RoomServers for room pushes
	Comets   Comets           // the comet nodes
}

// ErrClosed is returned by Start after Shutdown, and by the bus handler
// once the job is shutting down (the bus then redelivers the batch).
var ErrClosed = errors.New("job: closed")

// Job consumes pushes from the bus and fans them out to the comets.
type Job struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	now    func() time.Time
	rooms  roomTable
	drain  chan struct{}      // closed when Shutdown starts: flush rooms at once
	push   context.Context    // parent of every Comet call; cancelled by a forced Shutdown
	cancel context.CancelFunc // cancels push

	mu        sync.Mutex
	started   bool
	closing   bool
	subCancel context.CancelFunc
	wg        sync.WaitGroup // running handlers and room flushers
	closeOnce sync.Once

	errLog rateLimitedLog
}

// New validates cfg and deps and returns a job that is not consuming yet.
// log may be nil (slog.Default()). Unlike comet and logic, job adds no
// component attribute itself: the caller does (the one-process server
// passes component=job).
func New(cfg Config, deps Deps, log *slog.Logger) (*Job, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Bus == nil || deps.Sessions == nil || deps.Comets == nil {
		return nil, errors.New("job: Deps needs Bus, Sessions and Comets")
	}
	if log == nil {
		log = slog.Default()
	}
	pushCtx, cancel := context.WithCancel(context.Background())
	j := &Job{
		cfg:    cfg,
		deps:   deps,
		log:    log,
		now:    time.Now,
		drain:  make(chan struct{}),
		push:   pushCtx,
		cancel: cancel,
	}
	j.rooms.init()
	j.errLog.log = log
	return j, nil
}

// Start subscribes to bus.TopicPush as Config.Group and returns once the
// consumers run. Consuming stops when ctx ends or at Shutdown; either way
// call Shutdown (or Close) to drain and release the job.
func (j *Job) Start(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		return ErrClosed
	}
	if j.started {
		return errors.New("job: already started")
	}
	subCtx, cancel := context.WithCancel(ctx)
	if err := j.deps.Bus.Subscribe(subCtx, bus.TopicPush, j.cfg.Group, j.handle); err != nil {
		cancel()
		return fmt.Errorf("job: subscribe %s: %w", bus.TopicPush, err)
	}
	j.started = true
	j.subCancel = cancel
	return nil
}

// Shutdown stops consuming and waits until every message already received
// was handed to the comets: pending room batches are flushed at once,
// without waiting for the flush interval. If ctx ends first, running Comet
// calls are cancelled, Shutdown waits for them to return and reports ctx's
// error. It is safe to call more than once.
func (j *Job) Shutdown(ctx context.Context) error {
	j.mu.Lock()
	j.closing = true
	if j.subCancel != nil {
		j.subCancel()
	}
	j.mu.Unlock()
	j.closeOnce.Do(func() { close(j.drain) })

	done := make(chan struct{})
	go func() {
		j.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		j.cancel()
		return nil
	case <-ctx.Done():
		j.cancel()
		<-done
		return fmt.Errorf("job: shutdown: %w", ctx.Err())
	}
}

// Close is Shutdown without a deadline (Comet calls are still bounded by
// Config.PushTimeout, paced broadcasts excepted: Close waits for them).
func (j *Job) Close() error { return j.Shutdown(context.Background()) }

// enter registers a running handler; it fails once Shutdown started.
func (j *Job) enter() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		return false
	}
	j.wg.Add(1)
	return true
}

// handle is the bus handler. It returns once every message of msgs was
// handed to the comets (or dropped). Its ctx is ignored on purpose: a
// stopping consumer still drains what it received.
func (j *Job) handle(_ context.Context, msgs []bus.Message) error {
	if !j.enter() {
		return ErrClosed
	}
	defer j.wg.Done()

	var (
		wg         sync.WaitGroup
		keys       map[string][]*pushmsg.Msg // by server, in order
		broadcasts []*pushmsg.Msg
		rooms      roomGroups
	)
	decoded := make([]pushmsg.Msg, len(msgs))
	for i := range msgs {
		m := &decoded[i]
		if err := m.Unmarshal(msgs[i].Value); err != nil {
			droppedCorrupt.Inc()
			j.errLog.warn("corrupt", "job: dropping corrupt push message", "key", msgs[i].Key, "err", err)
			continue
		}
		switch m.Type {
		case pushmsg.Keys:
			pushesKeys.Inc()
			if len(m.Keys) == 0 {
				continue
			}
			if keys == nil {
				keys = make(map[string][]*pushmsg.Msg)
			}
			keys[m.Server] = append(keys[m.Server], m)
		case pushmsg.Room:
			pushesRoom.Inc()
			if m.Room == "" {
				droppedCorrupt.Inc()
				continue
			}
			rooms.add(m)
		case pushmsg.Broadcast:
			pushesBroadcast.Inc()
			broadcasts = append(broadcasts, m)
		}
	}

	for server, ms := range keys {
		c, ok := j.deps.Comets.Comet(server)
		if !ok {
			droppedUnknown.Add(float64(len(ms)))
			j.errLog.warn("unknown_server", "job: dropping keys push for an unknown comet", "server", server, "msgs", len(ms))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.pushKeys(c, server, ms)
		}()
	}
	if len(broadcasts) > 0 {
		for name, c := range j.deps.Comets.All() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, m := range broadcasts {
					j.broadcast(c, name, m)
				}
			}()
		}
	}
	waits := j.enqueueRooms(&rooms)
	wg.Wait()
	for _, b := range waits {
		select {
		case <-b.done:
		case <-j.push.Done():
			return ErrClosed // forced shutdown: let the bus redeliver
		}
	}
	return nil
}

func packet(m *pushmsg.Msg) protocol.Packet {
	return protocol.Packet{Ver: protocol.Version, Op: m.Operation, Seq: m.Seq, Body: m.Body}
}

// maxKeysBatchBytes caps the packet bytes of one PushKeysBatch call: a bus
// batch of large pushes for one comet leaves in several calls, one after the
// other (a single larger packet travels alone).
const maxKeysBatchBytes = 1 << 20

// pushKeys hands the keys pushes ms, in bus order, to comet c: one
// PushKeysBatch call per maxKeysBatchBytes of packets, each bounded by
// PushTimeout. A failed call counts its pushes as failed and the next call
// still runs (as one PushKeys per message did).
func (j *Job) pushKeys(c Comet, server string, ms []*pushmsg.Msg) {
	keys := make([][]string, 0, len(ms))
	ps := make([]protocol.Packet, 0, len(ms))
	size := 0
	flush := func() {
		if len(ps) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(j.push, j.cfg.PushTimeout)
		defer cancel()
		metricKeysBatches.Inc()
		metricKeysBatchSize.Observe(float64(len(ps)))
		if err := c.PushKeysBatch(ctx, keys, ps); err != nil {
			metricPushErrors.WithLabelValues(typeKeys).Add(float64(len(ps)))
			j.errLog.warn("push_keys", "job: PushKeysBatch failed", "server", server, "msgs", len(ps), "err", err)
		}
		keys, ps, size = keys[:0], ps[:0], 0
	}
	for _, m := range ms {
		if len(ps) > 0 && size+len(m.Body) > maxKeysBatchBytes {
			flush()
		}
		keys = append(keys, m.Keys)
		ps = append(ps, packet(m))
		size += len(m.Body)
	}
	flush()
}

// broadcast hands m to comet c. An unpaced broadcast is bounded by
// PushTimeout; a paced one (Speed > 0) takes about conns/Speed seconds by
// design, so it is bounded only by the job's lifetime (a forced Shutdown
// cancels it). It holds its bus batch until it is done.
func (j *Job) broadcast(c Comet, server string, m *pushmsg.Msg) {
	ctx, cancel := j.push, context.CancelFunc(func() {})
	if m.Speed <= 0 {
		ctx, cancel = context.WithTimeout(j.push, j.cfg.PushTimeout)
	}
	defer cancel()
	if err := c.Broadcast(ctx, packet(m), m.Speed); err != nil {
		metricPushErrors.WithLabelValues(typeBroadcast).Inc()
		j.errLog.warn("broadcast", "job: Broadcast failed", "server", server, "err", err)
	}
}

// rateLimitedLog logs at most one warning per kind per second and counts
// the ones it suppressed.
type rateLimitedLog struct {
	log   *slog.Logger
	mu    sync.Mutex
	last  map[string]time.Time
	quiet atomic.Int64
}

func (l *rateLimitedLog) warn(kind, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if now.Sub(l.last[kind]) < time.Second {
		l.mu.Unlock()
		l.quiet.Add(1)
		return
	}
	l.last[kind] = now
	l.mu.Unlock()
	if n := l.quiet.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
