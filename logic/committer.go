package logic

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// Group commit (docs/messaging.md "Group commit").
//
// Every send validates on its caller's goroutine, then hands its message to
// the committer and waits. The committer goroutine takes the first waiting
// message, drains whatever else is waiting (up to CommitMaxBatch) without
// waiting for more, and stores the lot with one AppendMessages call: one
// transaction. While that commit runs, new sends queue up and form the next
// batch, so the batch size follows the load (a lone message is committed at
// once; under load one commit carries many) with no timer. Each waiter is
// completed with its own AppendResult only after AppendMessages returned,
// so a SendAck always means durable.
//
// The committed batches go, in commit order, to the fan-out goroutine,
// which looks up the recipients' sessions and publishes the Op 22 message
// events on the bus: events of one conversation are published in seq
// order, and a slow session lookup delays events, never commits.

// errCommitterClosed refuses sends after Close.
var errCommitterClosed = errors.New("logic: message committer closed")

// commitReq is one message waiting for its commit.
type commitReq struct {
	msg *store.Message
	// Event fan-out: every participant's online devices but the sending
	// connection (sender, key).
	recipients []int64
	key        string

	done chan struct{} // closed when res / err are set
	res  store.AppendResult
	err  error // the whole batch failed

	// Bus mode (persist.go): the Op 4's comet and Seq for its SendAck, and
	// a channel closed once the request's events are published (or known
	// not to be).
	ackServer string
	ackSeq    int32
	fanned    chan struct{}

	// Op 4 from an in-process comet (opSendAsync): the connection's reply
	// path, which gets the SendAck (Ver ackVer, Seq ackSeq) instead of done
	// being closed.
	replies comet.AsyncReplies
	ackVer  int16
}

// asyncAcks returns the asynchronous Op 4 requests of batch (opSendAsync),
// whose SendAcks the fan-out goroutine sends, in order, once the batch is
// queued for it (the committer goes on with the next batch meanwhile).
// The others have a waiter: releaseWaiters closes their done.
func asyncAcks(batch []*commitReq) []*commitReq {
	var acks []*commitReq
	for _, r := range batch {
		if r.replies != nil {
			acks = append(acks, r)
		}
	}
	return acks
}

func releaseWaiters(batch []*commitReq) {
	for _, r := range batch {
		if r.replies == nil {
			close(r.done)
		}
	}
}

// fanDone closes r.fanned, if any.
func (r *commitReq) fanDone() {
	if r.fanned != nil {
		close(r.fanned)
	}
}

// committer owns the commit and fan-out goroutines. They start with the
// first message and stop at Close.
type committer struct {
	s       *Service
	mu      sync.RWMutex // held for reading while submitting; Close takes it for writing
	started atomic.Bool
	closed  bool
	in      chan *commitReq
	out     chan fanItem // committed batches and ordered events, in order, to fan-out
	wg      sync.WaitGroup

	// unknown holds the messages of batches whose commit failed with an
	// unknown outcome (a timeout, a connection lost at COMMIT): the store
	// may have kept them. A later retry of the same (sender,
	// client_msg_id) that finds the original stored takes the entry and
	// publishes the original's events, once.
	unknownMu sync.Mutex
	unknown   map[clientKey]unknownMsg

	// Cache barrier (cacheBarrier): batches whose AppendMessages started,
	// batches whose cache write is done (or that failed), and a channel
	// closed and replaced whenever cached moves.
	barrierMu    sync.Mutex
	begun        uint64
	cached       uint64
	cachedCh     chan struct{}
	cacheWaiting atomic.Int32 // recalls waiting in cacheBarrier (tests)
}

// clientKey is a message's idempotency key.
type clientKey struct {
	sender int64
	cmid   string
}

// unknownMsg is a message of a failed commit.
type unknownMsg struct {
	req *commitReq
	at  time.Time
}

// Bounds of the unknown-outcome memory: the most entries, and the age
// beyond which an entry may be forgotten when it is full.
const (
	maxUnknown    = 1 << 12
	unknownMaxAge = time.Hour
)

func (c *committer) init(s *Service) {
	c.s = s
	c.in = make(chan *commitReq, 4*s.cfg.CommitMaxBatch)
	c.out = make(chan fanItem, 256)
}

// startLocked starts the goroutines once (c.mu held for writing).
func (c *committer) startLocked() {
	if c.started.Load() || c.closed {
		return
	}
	c.started.Store(true)
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.run() }()
	go func() { defer c.wg.Done(); c.fanout() }()
}

// submit queues r and waits for its commit. An error means r's outcome is
// unknown to the caller (closed, or ctx done while queued or committing):
// the client retries with the same client_msg_id.
func (c *committer) submit(ctx context.Context, r *commitReq) error {
	if err := c.enqueue(ctx, r); err != nil {
		return err
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue queues r for commit without waiting for it (bus mode: the job
// queues a batch, then waits for each request's done).
func (c *committer) enqueue(ctx context.Context, r *commitReq) error {
	if !c.started.Load() {
		c.mu.Lock()
		c.startLocked()
		c.mu.Unlock()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errCommitterClosed
	}
	select {
	case c.in <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting messages, commits those queued, publishes their
// events and waits for both goroutines.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	started := c.started.Load()
	c.mu.Unlock()
	if started {
		close(c.in)
		c.wg.Wait()
	}
}

// run is the commit loop.
func (c *committer) run() {
	defer close(c.out)
	maxBatch := c.s.cfg.CommitMaxBatch
	batch := make([]*commitReq, 0, maxBatch)
	prev := 0 // the size of the previous batch
	for first := range c.in {
		batch = append(batch[:0], first)
		for yields := 0; ; yields++ {
			c.drain(&batch, maxBatch)
			// The senders completed by the previous commit are likely
			// coming back with their next message: while the batch is
			// smaller than the previous one, let them run (a yield, not a
			// sleep: it costs microseconds, a commit a hundred or more).
			if len(batch) >= prev || len(batch) >= maxBatch || yields == maxYields {
				break
			}
			runtime.Gosched()
		}
		prev = len(batch)
		c.commit(batch)
	}
}

// maxYields bounds the yields of the committer before one commit.
const maxYields = 2

// drain appends the waiting requests to batch, up to maxBatch, without
// waiting.
func (c *committer) drain(batch *[]*commitReq, maxBatch int) {
	for len(*batch) < maxBatch {
		select {
		case r, ok := <-c.in:
			if !ok {
				return
			}
			*batch = append(*batch, r)
		default:
			return
		}
	}
}

// commit stores one batch, hands the requests whose message was stored now
// (not duplicates or refusals) to fan-out, and then completes the waiters:
// an event ordered after an ack (a recall) is queued behind the message.
func (c *committer) commit(batch []*commitReq) {
	msgs := make([]*store.Message, len(batch))
	for i, r := range batch {
		msgs[i] = r.msg
	}
	c.barrierMu.Lock()
	c.begun++
	c.barrierMu.Unlock()
	defer c.batchCached()
	start := time.Now()
	res, err := c.append(msgs)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		// A failed batch stored nothing: one retry is safe (and a
		// transient failure, e.g. a MySQL deadlock between logic
		// processes, then costs no client a retry).
		commitRetries.Inc()
		res, err = c.append(msgs)
	}
	commitSeconds.Observe(time.Since(start).Seconds())
	commitBatchSize.Observe(float64(len(batch)))
	if err == nil && len(res) != len(batch) {
		err = errors.New("logic: AppendMessages returned a result count that does not match the batch")
	}
	if err != nil {
		commitErrors.Inc()
		c.s.log.Error("message commit failed: every message of the batch is refused with unavailable", "messages", len(batch), "err", err)
		c.rememberUnknown(batch)
		for _, r := range batch {
			r.err = err
			r.fanDone()
		}
		if acks := asyncAcks(batch); len(acks) > 0 {
			c.out <- fanItem{acks: acks}
		}
		releaseWaiters(batch)
		return
	}
	var stored, late []*commitReq
	for i, r := range batch {
		r.res = res[i]
		if r.res.Duplicate && r.res.ID == r.msg.ID {
			// A duplicate of itself: the attempt that reported a failure
			// (say, a connection lost at COMMIT) had stored it. It is this
			// request's message, stored now: ack and fan it out as such.
			r.res.Duplicate = false
			r.msg.Seq, r.msg.CreatedAt = r.res.Seq, r.res.CreatedAt
		}
		if r.res.Err == nil && !r.res.Duplicate {
			stored = append(stored, r)
		} else {
			r.fanDone()
		}
		if r.res.Duplicate {
			// A retry of a message whose commit was answered unavailable
			// but kept by the store: its events were never published.
			if l := c.takeUnknown(r.msg.SenderID, r.msg.ClientMsgID, r.res, r.key); l != nil {
				late = append(late, l)
			}
		}
	}
	// Before the acks: a page read after a SendAck sees the message.
	c.s.cacheCommitted(stored) // not late: an old seq would only reset the window
	// The unread mirror, also before the acks: a list read after a SendAck
	// counts the message. A late message's seq is behind the mirror's:
	// its recipients' counters are rebuilt instead.
	c.s.countCommitted(stored)
	for _, l := range late {
		c.s.unreadInvalidate(context.Background(), l.recipients...)
	}
	acks := asyncAcks(batch)
	if stored = append(stored, late...); len(stored) > 0 || len(acks) > 0 {
		c.out <- fanItem{reqs: stored, acks: acks}
	}
	releaseWaiters(batch)
}

// batchCached records that the current batch's cache write is done (or
// that it failed and wrote nothing).
func (c *committer) batchCached() {
	c.barrierMu.Lock()
	c.cached++
	if c.cachedCh != nil {
		close(c.cachedCh)
		c.cachedCh = nil
	}
	c.barrierMu.Unlock()
}

// cacheBarrier waits until every batch whose commit had started when it
// was called has written the message cache. A message the caller read
// from the store (say, to recall it) was committed by such a batch, so
// after the barrier the committer will never write that message's old
// state into the cache again: a cache invalidation made after the barrier
// is final. It returns early when ctx ends.
func (c *committer) cacheBarrier(ctx context.Context) error {
	c.barrierMu.Lock()
	target := c.begun
	c.barrierMu.Unlock()
	for {
		c.barrierMu.Lock()
		if c.cached >= target {
			c.barrierMu.Unlock()
			return nil
		}
		if c.cachedCh == nil {
			c.cachedCh = make(chan struct{})
		}
		ch := c.cachedCh
		c.barrierMu.Unlock()
		c.cacheWaiting.Add(1)
		select {
		case <-ch:
			c.cacheWaiting.Add(-1)
		case <-ctx.Done():
			c.cacheWaiting.Add(-1)
			return ctx.Err()
		}
	}
}

// rememberUnknown keeps the messages of a failed batch, whose outcome is
// unknown, for takeUnknown.
func (c *committer) rememberUnknown(batch []*commitReq) {
	now := time.Now()
	c.unknownMu.Lock()
	defer c.unknownMu.Unlock()
	if c.unknown == nil {
		c.unknown = make(map[clientKey]unknownMsg)
	}
	if len(c.unknown)+len(batch) > maxUnknown {
		for k, u := range c.unknown {
			if now.Sub(u.at) > unknownMaxAge {
				delete(c.unknown, k)
			}
		}
	}
	for _, r := range batch {
		if r.msg.ClientMsgID == "" || len(c.unknown) >= maxUnknown {
			continue
		}
		c.unknown[clientKey{r.msg.SenderID, r.msg.ClientMsgID}] = unknownMsg{req: r, at: now}
	}
}

// takeUnknown is called for a retry of (sender, cmid) that found the
// original stored (res: the original's result). When the original is the
// message of a failed commit (same msg_id), the store kept it without
// anyone being told: it returns a request to fan out, the original's
// message to the participants' devices but the retrying connection (key),
// which gets the SendAck. The entry is taken once: exactly one retry
// publishes.
func (c *committer) takeUnknown(sender int64, cmid string, res store.AppendResult, key string) *commitReq {
	k := clientKey{sender, cmid}
	c.unknownMu.Lock()
	u, ok := c.unknown[k]
	if ok {
		delete(c.unknown, k)
	}
	c.unknownMu.Unlock()
	if !ok {
		return nil
	}
	if u.req.msg.ID != res.ID {
		return nil // the failed attempt was a retry itself: the original was published
	}
	m := *u.req.msg
	m.Seq, m.CreatedAt, m.IndexUsers = res.Seq, res.CreatedAt, nil
	return &commitReq{msg: &m, recipients: u.req.recipients, key: key}
}

// publishLate publishes, in order behind the queued events, the events of
// an original found stored by a retry outside the committer (the refusal
// path of send.go).
func (c *committer) publishLate(orig *store.Message, key string) {
	late := c.takeUnknown(orig.SenderID, orig.ClientMsgID, store.AppendResult{ID: orig.ID, Seq: orig.Seq, CreatedAt: orig.CreatedAt}, key)
	if late == nil {
		return
	}
	c.ordered(func() { c.s.publishMessages([]*commitReq{late}) })
}

// fanItem is one unit of fan-out: the stored requests of a batch and
// the asynchronous SendAcks of the batch (acks, sent first), or an event
// to publish in order with them (fn).
type fanItem struct {
	reqs []*commitReq
	acks []*commitReq
	fn   func()
}

// ordered runs fn on the fan-out goroutine after the events of every batch
// committed so far, so that an event about a message (a recall) never
// overtakes the message's own event. Without a running committer it runs
// fn at once.
func (c *committer) ordered(fn func()) {
	c.mu.RLock()
	if !c.started.Load() || c.closed {
		c.mu.RUnlock()
		fn()
		return
	}
	c.out <- fanItem{fn: fn}
	c.mu.RUnlock()
}

// append runs one AppendMessages bounded by CommitTimeout.
func (c *committer) append(msgs []*store.Message) ([]store.AppendResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.CommitTimeout)
	defer cancel()
	return c.s.msgs.AppendMessages(ctx, msgs)
}

// fanout publishes the message events of the committed batches in order.
// It merges the batches waiting for it so that one session lookup serves
// many messages.
func (c *committer) fanout() {
	var reqs []*commitReq
	take := func(it fanItem) {
		for _, r := range it.acks {
			c.s.replyCommitted(r)
		}
		if it.fn == nil {
			reqs = append(reqs, it.reqs...)
			return
		}
		if len(reqs) > 0 { // what came before goes first
			c.s.publishMessages(reqs)
			for _, r := range reqs {
				r.fanDone()
			}
			reqs = nil
		}
		it.fn()
	}
	for it := range c.out {
		take(it)
	drain:
		for len(reqs) < 4*c.s.cfg.CommitMaxBatch {
			select {
			case more, ok := <-c.out:
				if !ok {
					break drain
				}
				take(more)
			default:
				break drain
			}
		}
		if len(reqs) > 0 {
			c.s.publishMessages(reqs)
			for _, r := range reqs {
				r.fanDone()
			}
			reqs = nil
		}
	}
}

// publishMessages publishes the Op 22 message event of each request to
// the online devices of its recipients but the sending connection.
func (s *Service) publishMessages(reqs []*commitReq) {
	ctx, cancel := context.WithTimeout(context.Background(), sideEffectTimeout)
	defer cancel()
	var users []int64
	for _, r := range reqs {
		users = append(users, r.recipients...)
	}
	slices.Sort(users)
	users = slices.Compact(users)
	if len(users) == 0 {
		return
	}
	sessions, err := s.sessions.UserSessions(ctx, users)
	if err != nil {
		eventErrors.Inc()
		s.log.Warn("message events not published: session lookup failed (clients recover by Sync)", "messages", len(reqs), "err", err)
		return
	}
	var out []bus.Message
	groups := make(map[string][]string)
	for _, r := range reqs {
		clear(groups)
		for _, u := range r.recipients {
			for _, ss := range sessions[u] {
				if u == r.msg.SenderID && ss.Key == r.key {
					continue // the sending connection gets the SendAck
				}
				groups[ss.Server] = append(groups[ss.Server], ss.Key)
			}
		}
		if len(groups) == 0 {
			continue
		}
		body, err := sonic.Marshal(messageEvent{Type: evMessage, Message: toMessageJSON(r.msg)})
		if err != nil {
			eventErrors.Inc()
			s.log.Error("message event not encoded", "msg_id", r.msg.ID, "err", err)
			continue
		}
		out = appendPushes(out, groups, body)
	}
	if len(out) == 0 {
		return
	}
	if err := s.bus.Publish(ctx, out...); err != nil {
		eventErrors.Inc()
		s.log.Warn("message events not published: bus failed (clients recover by Sync)", "messages", len(reqs), "err", err)
		return
	}
	events.WithLabelValues(evMessage).Add(float64(len(reqs)))
}

// appendPushes appends one Keys push of body per comet (sorted by name,
// keyed by it so that pushes to one device keep their order).
func appendPushes(out []bus.Message, groups map[string][]string, body []byte) []bus.Message {
	servers := make([]string, 0, len(groups))
	for srv := range groups {
		servers = append(servers, srv)
	}
	slices.Sort(servers)
	for _, srv := range servers {
		m := pushmsg.Msg{Type: pushmsg.Keys, Operation: protocol.OpEvent, Server: srv, Keys: groups[srv], Body: body}
		out = append(out, bus.Message{Topic: bus.TopicPush, Key: srv, Value: m.Marshal()})
	}
	return out
}

// emitExcept is emit (events.go) without the device (exceptUser,
// exceptKey): the connection that caused the event.
func (s *Service) emitExcept(ctx context.Context, typ string, users []int64, exceptUser int64, exceptKey string, ev any) {
	if len(users) == 0 {
		return
	}
	users = slices.Clone(users)
	slices.Sort(users)
	users = slices.Compact(users)
	sessions, err := s.sessions.UserSessions(ctx, users)
	if err != nil {
		eventErrors.Inc()
		s.log.Warn("event not published: session lookup failed", "type", typ, "users", len(users), "err", err)
		return
	}
	groups := make(map[string][]string)
	for _, u := range users {
		for _, ss := range sessions[u] {
			if u == exceptUser && ss.Key == exceptKey {
				continue
			}
			groups[ss.Server] = append(groups[ss.Server], ss.Key)
		}
	}
	if len(groups) == 0 {
		return
	}
	body, err := sonic.Marshal(ev)
	if err != nil {
		eventErrors.Inc()
		s.log.Error("event not encoded", "type", typ, "err", err)
		return
	}
	if err := s.bus.Publish(ctx, appendPushes(nil, groups, body)...); err != nil {
		eventErrors.Inc()
		s.log.Warn("event not published: bus failed", "type", typ, "users", len(users), "err", err)
		return
	}
	events.WithLabelValues(typ).Inc()
}

// Close stops the message committer: sends still queued are committed
// and their events published; later sends are refused with unavailable.
// Call it after the comets and the HTTP server stopped calling the service
// and before closing the store. It is safe to call more than once.
func (s *Service) Close() error {
	s.commit.close()
	return nil
}
