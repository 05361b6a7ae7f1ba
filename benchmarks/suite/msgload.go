package suite

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/goimdev/goim/benchmarks/loadgen"
	"github.com/goimdev/goim/internal/auth"
	"github.com/goimdev/goim/protocol"
)

// This file is the engine shared by the messaging scenarios (chat, group,
// history seeding): connections that send Op 4 SendReqs and read Op 5
// SendAcks and Op 22 message events, in the driver process. Every message
// is tracked by (sender, number): its send time, whether it was acked and
// how many of its receivers got the event, so loss is exact.

// Send modes.
const (
	ModeOpen   = "open"   // paced at a total rate
	ModeClosed = "closed" // W messages in flight per sender
)

// MsgStats are the measured figures of one messaging load.
type MsgStats struct {
	Mode string `json:"mode"`
	// Rate is the requested total send rate (open loop); InFlight the
	// messages in flight per sender (closed loop).
	Rate     float64 `json:"rate,omitempty"`
	InFlight int     `json:"in_flight,omitempty"`
	Senders  int     `json:"senders"`
	// Receivers is the number of connections that should get each message.
	Receivers int `json:"receivers_per_message"`
	// Sent SendReqs (write_error in RefusedCodes counts the writes that
	// failed); Acked got code 0; Refused got another code (RefusedCodes);
	// Unacked got no SendAck at all.
	Sent         int64            `json:"sent"`
	Acked        int64            `json:"acked"`
	Refused      int64            `json:"refused"`
	RefusedCodes map[string]int64 `json:"refused_codes,omitempty"`
	Unacked      int64            `json:"unacked"`
	// SendSeconds is the sending window; SentPerSec = Sent / it.
	SendSeconds float64 `json:"send_seconds"`
	SentPerSec  float64 `json:"sent_per_sec"`
	// AckedPerSec = Acked / (last ack - first send): messages persisted.
	AckedPerSec float64 `json:"acked_per_sec"`
	// Expected = Acked * Receivers; Delivered counts message events of
	// benchmark messages (duplicates excluded); Lost = acked deliveries
	// that never arrived; Duplicates and UnknownEvents are anomalies.
	Expected      int64 `json:"expected_deliveries"`
	Delivered     int64 `json:"delivered"`
	Lost          int64 `json:"lost"`
	Duplicates    int64 `json:"duplicates"`
	UnknownEvents int64 `json:"unknown_events"`
	// DeliveredPerSec = Delivered / (last delivery - first send).
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	// AckLatency is send -> SendAck; E2ELatency send -> receiver's event
	// (one machine clock). Open loop: from the message's scheduled time.
	AckLatency Latency `json:"ack_latency"`
	E2ELatency Latency `json:"e2e_latency"`
	// CPU in % of one core over the window (sending and draining): the
	// server, this driver (which holds every client connection) and the
	// rest of the machine.
	ServerCPUPercent float64 `json:"server_cpu_percent"`
	DriverCPUPercent float64 `json:"driver_cpu_percent"`
	IRQCPUPercent    float64 `json:"irq_cpu_percent"`
	OtherCPUPercent  float64 `json:"other_cpu_percent"`
	// CommitBatchMean is the mean messages per group commit (server metric).
	CommitBatchMean float64 `json:"commit_batch_mean,omitempty"`
	// Disconnects are the Op 6 codes received; ClosedByServer the
	// connections that ended during the run.
	Disconnects    map[string]int64 `json:"disconnects,omitempty"`
	ClosedByServer int64            `json:"closed_by_server"`
	// DrainTimedOut: the wait for acks and events ended before all came.
	DrainTimedOut bool `json:"drain_timed_out,omitempty"`
	// Metrics are the server's goim_* deltas over the window.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// msgSender is one sending connection and the messages it sent.
type msgSender struct {
	idx       int
	conn      *loadgen.MsgConn
	toUser    int64
	groupID   int64
	receivers int

	mu      sync.Mutex
	sentAt  []int64  // send time by message number
	state   []uint8  // stateSent...
	recv    []uint16 // events received by message number
	pktSeq  int32
	buf     []byte
	limit   int // closed loop: stop after this many (0: no limit)
	stopped bool
}

// msgLoad runs sends over a set of connections.
type msgLoad struct {
	conns   []*loadgen.MsgConn
	senders []*msgSender
	byConn  map[*loadgen.MsgConn]*msgSender
	runID   uint32 // names this load's client_msg_ids

	stopping  atomic.Bool
	mode      atomic.Int32 // 1 open, 2 closed loop
	ackHist   *loadgen.Hist
	e2eHist   *loadgen.Hist
	sent      atomic.Int64
	acked     atomic.Int64
	refused   atomic.Int64
	delivered atomic.Int64
	dups      atomic.Int64
	unknown   atomic.Int64
	firstSend atomic.Int64
	lastAck   atomic.Int64
	lastRecv  atomic.Int64
	sendErrs  atomic.Int64

	mu    sync.Mutex
	codes map[string]int64
	discs map[string]int64

	hbStop chan struct{}
	hbWG   sync.WaitGroup
}

// connectMsg opens one messaging connection per user (device "bench-<uid>")
// with up to 64 handshakes at once. On error it closes what it opened.
func connectMsg(ctx context.Context, tgt Target, transport string, uids []int64) ([]*loadgen.MsgConn, error) {
	iss, err := auth.NewIssuer([]byte(tgt.Secret), "goim")
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	conns := make([]*loadgen.MsgConn, len(uids))
	errs := make([]error, len(uids))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, uid := range uids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			key := "bench-" + strconv.FormatInt(uid, 10)
			tok, _, err := iss.Issue(uid, key, 24*time.Hour)
			if err != nil {
				errs[i] = err
				return
			}
			conns[i], errs[i] = loadgen.DialMsg(ctx, tgt.CometAddrAt(transport, i), transport, tok, key, uid, 15*time.Second)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conns, nil
}

// newMsgLoad starts the readers of conns. senders name, per sending
// connection, where it sends and how many receivers each message has.
func newMsgLoad(conns []*loadgen.MsgConn, senders []*msgSender) *msgLoad {
	l := &msgLoad{conns: conns, senders: senders, byConn: map[*loadgen.MsgConn]*msgSender{},
		ackHist: loadgen.NewHist(), e2eHist: loadgen.NewHist(), codes: map[string]int64{}, discs: map[string]int64{},
		hbStop: make(chan struct{}), runID: newRunID()}
	for i, s := range senders {
		s.idx = i
		l.byConn[s.conn] = s
	}
	for _, c := range conns {
		c.Start(func(p protocol.Packet, now int64) { l.handle(c, p, now) })
	}
	hb := 10 * time.Second
	if len(conns) > 0 && conns[0].Heartbeat > 0 {
		hb = conns[0].Heartbeat / 2
	}
	loadgen.HeartbeatLoop(conns, hb, l.hbStop, &l.hbWG)
	return l
}

// close stops the heartbeats and closes every connection.
func (l *msgLoad) close() {
	close(l.hbStop)
	l.hbWG.Wait()
	for _, c := range l.conns {
		c.Close()
	}
}

func (l *msgLoad) count(m map[string]int64, k string) {
	l.mu.Lock()
	if _, ok := m[k]; ok || len(m) < 32 {
		m[k]++
	}
	l.mu.Unlock()
}

func (l *msgLoad) handle(c *loadgen.MsgConn, p protocol.Packet, now int64) {
	switch p.Op {
	case protocol.OpSendMsgReply:
		id, code, err := loadgen.ParseAck(p.Body)
		if err != nil {
			l.count(l.codes, "unparsed_ack")
			return
		}
		run, si, n, err := loadgen.ParseBenchID(id)
		if err != nil || run != l.runID || si >= len(l.senders) {
			l.count(l.codes, "unknown_ack")
			return
		}
		l.senders[si].onAck(l, n, code, now)
	case protocol.OpEvent:
		id, ok, err := loadgen.ParseMessageEvent(p.Body)
		if err != nil || !ok {
			return // other events (group_changed...) are not counted
		}
		run, si, n, err := loadgen.ParseBenchID(id)
		if err != nil || run != l.runID || si >= len(l.senders) {
			l.unknown.Add(1)
			return
		}
		l.senders[si].onRecv(l, n, now)
	case protocol.OpDisconnect:
		var d struct {
			Code string `json:"code"`
		}
		if err := sonic.Unmarshal(p.Body, &d); err != nil || d.Code == "" {
			d.Code = "unparsed"
		}
		l.count(l.discs, d.Code)
	}
}

// send sends message number len(sentAt) stamped t. The caller must not
// hold s.mu.
func (s *msgSender) send(l *msgLoad, t int64) {
	s.mu.Lock()
	if s.stopped || (s.limit > 0 && len(s.sentAt) >= s.limit) {
		s.mu.Unlock()
		return
	}
	n := len(s.sentAt)
	s.sentAt = append(s.sentAt, t)
	s.state = append(s.state, 0)
	s.recv = append(s.recv, 0)
	s.pktSeq++
	s.buf = loadgen.AppendSendReq(s.buf[:0], s.pktSeq, l.runID, s.idx, n, s.toUser, s.groupID, t)
	// Counted before the write: drain must never see an answer count
	// that caught up with a send still being written.
	l.sent.Add(1)
	l.firstSend.CompareAndSwap(0, t)
	if err := s.conn.Write(s.buf); err != nil {
		s.stopped = true
		s.state[n] = stateWriteFailed
		l.sendErrs.Add(1)
	}
	s.mu.Unlock()
}

// Message states.
const (
	stateSent        uint8 = iota // written, no answer yet
	stateAcked                    // SendAck code 0
	stateRefused                  // SendAck with another code
	stateWriteFailed              // the write failed: never reached the server
)

func (s *msgSender) onAck(l *msgLoad, n int, code string, now int64) {
	s.mu.Lock()
	if n >= len(s.sentAt) || s.state[n] != stateSent {
		s.mu.Unlock()
		l.count(l.codes, "unexpected_ack")
		return
	}
	sent := s.sentAt[n]
	if code == "" {
		s.state[n] = stateAcked
	} else {
		s.state[n] = stateRefused
	}
	s.mu.Unlock()
	if code == "" {
		l.acked.Add(1)
		l.ackHist.Record(now - sent)
		storeMax(&l.lastAck, now)
	} else {
		l.refused.Add(1)
		l.count(l.codes, code)
	}
	if l.closedLoop() && !l.stopping.Load() {
		s.send(l, time.Now().UnixNano())
	}
}

func (s *msgSender) onRecv(l *msgLoad, n int, now int64) {
	s.mu.Lock()
	if n >= len(s.sentAt) {
		s.mu.Unlock()
		l.unknown.Add(1)
		return
	}
	sent := s.sentAt[n]
	s.recv[n]++
	dup := int(s.recv[n]) > s.receivers
	s.mu.Unlock()
	if dup {
		l.dups.Add(1)
		return
	}
	l.delivered.Add(1)
	l.e2eHist.Record(now - sent)
	storeMax(&l.lastRecv, now)
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// closedLoop reports whether an ack triggers the sender's next message.
func (l *msgLoad) closedLoop() bool { return l.mode.Load() == 2 }

// msgRunSpec is one measured window.
type msgRunSpec struct {
	Mode     string
	Rate     float64       // open loop: total messages/s
	InFlight int           // closed loop: per sender
	Duration time.Duration // sending time; 0 with Limit: until every sender sent Limit
	Limit    int           // closed loop: messages per sender (0: none)
	Drain    time.Duration // longest wait for acks and events afterwards
	Quiet    time.Duration // end the wait when nothing arrived for this long
	Progress io.Writer
}

// run sends for the window, drains and returns the figures.
func (l *msgLoad) run(ctx context.Context, tgt Target, spec msgRunSpec) (MsgStats, error) {
	if spec.Drain <= 0 {
		spec.Drain = 30 * time.Second
	}
	if spec.Quiet <= 0 {
		spec.Quiet = 3 * time.Second
	}
	if spec.InFlight <= 0 {
		spec.InFlight = 1
	}
	before, _ := ScrapeMetrics(ctx, tgt.HTTPAddr)
	srvCPU, ownCPU, mach := startCPU(tgt.PID), startCPU(os.Getpid()), startMachine()
	if tgt.PID == os.Getpid() {
		srvCPU = cpuMeter{}
	}
	for _, s := range l.senders {
		s.limit = spec.Limit
	}
	t0 := time.Now()
	var err error
	switch spec.Mode {
	case ModeClosed:
		l.mode.Store(2)
		for _, s := range l.senders {
			for range spec.InFlight {
				s.send(l, time.Now().UnixNano())
			}
		}
		err = l.waitSending(ctx, spec, t0)
	case ModeOpen:
		l.mode.Store(1)
		err = l.pace(ctx, spec.Rate, spec.Duration, spec.Progress)
	default:
		return MsgStats{}, fmt.Errorf("unknown mode %q", spec.Mode)
	}
	l.stopping.Store(true)
	sendSecs := time.Since(t0).Seconds()
	timedOut := l.drain(ctx, spec.Drain, spec.Quiet)
	st := l.stats(spec, sendSecs, timedOut)
	st.ServerCPUPercent, st.DriverCPUPercent = srvCPU.percent(), ownCPU.percent()
	busy, irq := mach.percent()
	st.IRQCPUPercent = irq
	st.OtherCPUPercent = otherCPU(busy, irq, max(st.ServerCPUPercent, 0), st.DriverCPUPercent)
	if after, aerr := ScrapeMetrics(ctx, tgt.HTTPAddr); aerr == nil && before != nil {
		st.Metrics = metricsDelta(before, after)
		if c := st.Metrics["goim_logic_commit_batch_messages_count"]; c > 0 {
			st.CommitBatchMean = round1(st.Metrics["goim_logic_commit_batch_messages_sum"] / c)
		}
	}
	return st, err
}

// waitSending waits out a closed-loop window: Duration, or until every
// sender reached its Limit and got its answers.
func (l *msgLoad) waitSending(ctx context.Context, spec msgRunSpec, t0 time.Time) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastPrint := t0
	lastCount, lastMove := int64(-1), t0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		el := time.Since(t0)
		if spec.Progress != nil && time.Since(lastPrint) >= time.Second {
			lastPrint = time.Now()
			fmt.Fprintf(spec.Progress, "\r  %4.0fs sent %d acked %d delivered %d   ", el.Seconds(), l.sent.Load(), l.acked.Load(), l.delivered.Load())
		}
		if spec.Duration > 0 && el >= spec.Duration {
			return nil
		}
		if spec.Limit > 0 && l.sent.Load() >= int64(spec.Limit*len(l.senders)) && l.answered() {
			return nil
		}
		if n := l.sent.Load() + l.acked.Load() + l.refused.Load(); n != lastCount {
			lastCount, lastMove = n, time.Now()
		} else if spec.Duration <= 0 && time.Since(lastMove) > spec.Drain {
			return fmt.Errorf("sending stalled: %d sent, %d acked, %d refused, %d write errors", l.sent.Load(), l.acked.Load(), l.refused.Load(), l.sendErrs.Load())
		}
	}
}

func (l *msgLoad) answered() bool {
	return l.acked.Load()+l.refused.Load()+l.sendErrs.Load() >= l.sent.Load()
}

// pace sends at rate messages/s in total for d, round robin over the
// senders, from a few pacer goroutines. Each message is stamped with its
// scheduled time, so a pacer that falls behind shows as latency.
func (l *msgLoad) pace(ctx context.Context, rate float64, d time.Duration, progress io.Writer) error {
	if rate <= 0 || len(l.senders) == 0 {
		return errors.New("open loop needs a positive rate and senders")
	}
	pacers := min(4, len(l.senders))
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for g := range pacers {
		var mine []*msgSender
		for i := g; i < len(l.senders); i += pacers {
			mine = append(mine, l.senders[i])
		}
		r := rate / float64(pacers)
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for {
				due := start.Add(time.Duration(float64(k) / r * float64(time.Second)))
				if !due.Before(end) || ctx.Err() != nil {
					return
				}
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				mine[k%len(mine)].send(l, due.UnixNano())
				k++
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return ctx.Err()
		case <-tick.C:
			if progress != nil {
				fmt.Fprintf(progress, "\r  %4.0fs sent %d acked %d delivered %d   ", time.Since(start).Seconds(), l.sent.Load(), l.acked.Load(), l.delivered.Load())
			}
		}
	}
}

// drain waits until every sent message was answered and every acked one
// delivered to all its receivers, nothing arrived for quiet, or limit
// passed. It reports whether it gave up.
func (l *msgLoad) drain(ctx context.Context, limit, quiet time.Duration) bool {
	deadline := time.Now().Add(limit)
	lastProgress, lastCount := time.Now(), int64(-1)
	for {
		want := l.expected()
		got := l.delivered.Load()
		if l.answered() && got >= want {
			return false
		}
		if n := got + l.acked.Load() + l.refused.Load(); n != lastCount {
			lastCount, lastProgress = n, time.Now()
		}
		if time.Now().After(deadline) || time.Since(lastProgress) > quiet || ctx.Err() != nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *msgLoad) expected() int64 {
	var e int64
	for _, s := range l.senders {
		s.mu.Lock()
		for _, st := range s.state {
			if st == stateAcked {
				e += int64(s.receivers)
			}
		}
		s.mu.Unlock()
	}
	return e
}

func (l *msgLoad) stats(spec msgRunSpec, sendSecs float64, timedOut bool) MsgStats {
	st := MsgStats{Mode: spec.Mode, Senders: len(l.senders), SendSeconds: round3(sendSecs), DrainTimedOut: timedOut}
	if spec.Mode == ModeOpen {
		st.Rate = spec.Rate
	} else {
		st.InFlight = spec.InFlight
	}
	if len(l.senders) > 0 {
		st.Receivers = l.senders[0].receivers
	}
	for _, s := range l.senders {
		s.mu.Lock()
		for n, state := range s.state {
			switch state {
			case stateSent:
				st.Unacked++
			case stateAcked:
				st.Expected += int64(s.receivers)
				st.Lost += int64(max(0, s.receivers-int(s.recv[n])))
			}
		}
		s.mu.Unlock()
	}
	st.Sent, st.Acked, st.Refused = l.sent.Load(), l.acked.Load(), l.refused.Load()
	st.Delivered, st.Duplicates, st.UnknownEvents = l.delivered.Load(), l.dups.Load(), l.unknown.Load()
	l.mu.Lock()
	st.RefusedCodes = copyMap(l.codes)
	st.Disconnects = copyMap(l.discs)
	l.mu.Unlock()
	if e := l.sendErrs.Load(); e > 0 {
		if st.RefusedCodes == nil {
			st.RefusedCodes = map[string]int64{}
		}
		st.RefusedCodes["write_error"] += e
	}
	for _, c := range l.conns {
		if c.Err() != nil {
			st.ClosedByServer++
		}
	}
	if sendSecs > 0 {
		st.SentPerSec = round1(float64(st.Sent) / sendSecs)
	}
	first := l.firstSend.Load()
	if la := l.lastAck.Load(); la > first && first > 0 {
		st.AckedPerSec = round1(float64(st.Acked) / (float64(la-first) / 1e9))
	}
	if lr := l.lastRecv.Load(); lr > first && first > 0 {
		st.DeliveredPerSec = round1(float64(st.Delivered) / (float64(lr-first) / 1e9))
	}
	st.AckLatency = l.ackHist.Summary()
	st.E2ELatency = l.e2eHist.Summary()
	return st
}

// newRunID returns a random run number for client_msg_ids.
func newRunID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func copyMap(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Check returns anomalies of one messaging window in plain words.
func (s MsgStats) Check(what string) []string {
	var notes []string
	if s.Lost > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d acked deliveries never arrived", what, s.Lost))
	}
	if s.Unacked > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d messages sent but never answered", what, s.Unacked))
	}
	if s.Refused > 0 || len(s.RefusedCodes) > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d refused; answer and write anomalies: %s", what, s.Refused, codes(s.RefusedCodes)))
	}
	if s.Duplicates > 0 || s.UnknownEvents > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d duplicate and %d unknown message events", what, s.Duplicates, s.UnknownEvents))
	}
	if s.ClosedByServer > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d connections closed by the server (Op 6: %s)", what, s.ClosedByServer, codes(s.Disconnects)))
	}
	return notes
}
