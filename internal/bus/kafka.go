package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	kafkaPublished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_kafka_published_total",
		Help: "Messages acknowledged by Kafka.",
	}, []string{"topic"})
	kafkaPublishErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_kafka_publish_errors_total",
		Help: "Messages Kafka did not acknowledge (after the producer's retries).",
	}, []string{"topic"})
	kafkaConsumed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_kafka_consumed_total",
		Help: "Messages handled successfully (marked; committed within commit_interval or when the session ends).",
	}, []string{"topic", "group"})
	kafkaRedeliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_kafka_redeliveries_total",
		Help: "Batches redelivered after a handler error.",
	}, []string{"topic", "group"})
	kafkaSessions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_bus_kafka_group_sessions_total",
		Help: "Consumer group sessions started (one per join and rebalance).",
	}, []string{"topic", "group"})
)

// KafkaConfig configures the Kafka bus. Zero values take the default
// documented on each field; only Brokers is required.
type KafkaConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string `yaml:"brokers"`
	// ClientID names this process to the brokers. Default "goim".
	ClientID string `yaml:"client_id"`
	// Version is the Kafka protocol version spoken, at least 0.11.0.0 (the
	// idempotent producer needs it). Default "2.8.0".
	Version string `yaml:"version"`

	// Partitions is the partition count of the topics the bus creates.
	// Default 8.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor of the topics the bus creates; -1 or 0 uses the
	// brokers' default.replication.factor. Default -1.
	ReplicationFactor int16 `yaml:"replication_factor"`
	// TopicConfig entries (for example min.insync.replicas) are set on the
	// topics the bus creates. Default none.
	TopicConfig map[string]string `yaml:"topic_config"`
	// NoCreateTopics stops the bus from creating the topics it publishes to
	// or consumes (through the admin API, once per topic and process);
	// they must then exist or be auto-created by the brokers. Default false.
	NoCreateTopics bool `yaml:"no_create_topics"`

	// ProducerRetries is how often the producer retries a failed produce
	// request before Publish fails. Default 10.
	ProducerRetries int `yaml:"producer_retries"`
	// ProducerRetryBackoff is the wait between those retries. Default 100ms.
	ProducerRetryBackoff time.Duration `yaml:"producer_retry_backoff"`
	// Linger is how long the producer waits to fill a produce request. With
	// 0 a request leaves at once, and messages published while it is in
	// flight (one request per broker at a time, as the idempotent producer
	// requires) go together in the next one. Default 0.
	Linger time.Duration `yaml:"linger"`
	// MaxMessageBytes bounds one message. Default 1000000.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// Compression of produced batches: none, gzip, snappy, lz4 or zstd.
	// Default none.
	Compression string `yaml:"compression"`

	// MaxBatch is the most messages handed to one handler call. Default 256.
	MaxBatch int `yaml:"max_batch"`
	// CommitInterval is how often a consumer commits the offsets of the
	// batches its handler finished (marked) since the last commit, in one
	// request for all its partitions, off the partitions' handling path.
	// The marked offsets are also committed when a group session ends
	// (Close, a cancelled Subscribe, a rebalance), so only a crash loses
	// up to an interval of commits, which the next owner redelivers.
	// Default 100ms.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// RetryBackoff is the wait before redelivering a batch whose handler
	// failed; it doubles on each consecutive failure up to MaxRetryBackoff.
	// Default 50ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// MaxRetryBackoff caps RetryBackoff. Default 2s.
	MaxRetryBackoff time.Duration `yaml:"max_retry_backoff"`
	// SessionTimeout: a consumer silent this long leaves its group and its
	// partitions move to the others. Default 10s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval between a consumer's heartbeats, below a third of
	// SessionTimeout. Default 3s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// InitialOffset is where a group with no committed offset starts:
	// "oldest" (every retained message, like the memory bus) or "newest".
	// Default "oldest".
	InitialOffset string `yaml:"initial_offset"`
}

// DefaultKafkaConfig returns the defaults (without Brokers).
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{
		ClientID:             "goim",
		Version:              "2.8.0",
		Partitions:           8,
		ReplicationFactor:    -1,
		ProducerRetries:      10,
		ProducerRetryBackoff: 100 * time.Millisecond,
		MaxMessageBytes:      1000000,
		Compression:          "none",
		MaxBatch:             256,
		CommitInterval:       100 * time.Millisecond,
		RetryBackoff:         50 * time.Millisecond,
		MaxRetryBackoff:      2 * time.Second,
		SessionTimeout:       10 * time.Second,
		HeartbeatInterval:    3 * time.Second,
		InitialOffset:        "oldest",
	}
}

func (c KafkaConfig) withDefaults() KafkaConfig {
	d := DefaultKafkaConfig()
	if c.ClientID == "" {
		c.ClientID = d.ClientID
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.Partitions <= 0 {
		c.Partitions = d.Partitions
	}
	if c.ReplicationFactor <= 0 {
		c.ReplicationFactor = d.ReplicationFactor
	}
	if c.ProducerRetries <= 0 {
		c.ProducerRetries = d.ProducerRetries
	}
	if c.ProducerRetryBackoff <= 0 {
		c.ProducerRetryBackoff = d.ProducerRetryBackoff
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = d.CommitInterval
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = d.RetryBackoff
	}
	if c.MaxRetryBackoff < c.RetryBackoff {
		c.MaxRetryBackoff = max(d.MaxRetryBackoff, c.RetryBackoff)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = min(d.HeartbeatInterval, c.SessionTimeout/3)
	}
	if c.InitialOffset == "" {
		c.InitialOffset = d.InitialOffset
	}
	return c
}

// saramaConfig translates c (with defaults applied) into a sarama config.
func (c KafkaConfig) saramaConfig() (*sarama.Config, error) {
	if len(c.Brokers) == 0 {
		return nil, errors.New("bus: kafka: no brokers")
	}
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return nil, fmt.Errorf("bus: kafka: version: %w", err)
	}
	if !v.IsAtLeast(sarama.V0_11_0_0) {
		return nil, fmt.Errorf("bus: kafka: version %s below 0.11.0.0", c.Version)
	}
	sc.Version = v

	// Idempotent producer: acks from all in-sync replicas, one request in
	// flight per broker so retries keep the order, sequence numbers so
	// retries do not duplicate.
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = c.ProducerRetries
	sc.Producer.Retry.Backoff = c.ProducerRetryBackoff
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner // FNV-1a of the key
	sc.Producer.Flush.Frequency = c.Linger
	sc.Producer.MaxMessageBytes = c.MaxMessageBytes
	switch strings.ToLower(c.Compression) {
	case "none":
		sc.Producer.Compression = sarama.CompressionNone
	case "gzip":
		sc.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		sc.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		sc.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		sc.Producer.Compression = sarama.CompressionZSTD
	default:
		return nil, fmt.Errorf("bus: kafka: unknown compression %q", c.Compression)
	}
	sc.Metadata.AllowAutoTopicCreation = c.NoCreateTopics

	// Consumer groups: the bus marks a batch's offsets after its handler
	// succeeded; sarama commits the marked offsets every CommitInterval and
	// when the session ends (its offset manager flushes on release, before
	// the member leaves or rejoins the group). Nothing unmarked is
	// committed.
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	switch c.InitialOffset {
	case "oldest":
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	case "newest":
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	default:
		return nil, fmt.Errorf("bus: kafka: initial_offset %q is neither oldest nor newest", c.InitialOffset)
	}
	sc.Consumer.Group.Session.Timeout = c.SessionTimeout
	sc.Consumer.Group.Heartbeat.Interval = c.HeartbeatInterval
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	sc.ChannelBufferSize = max(256, c.MaxBatch)
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("bus: kafka: config: %w", err)
	}
	return sc, nil
}

// Kafka is the bus of the distributed mode, on Apache Kafka through
// IBM/sarama.
//
// Publish: one idempotent async producer per bus is shared by all Publish
// calls, so concurrent calls share produce requests. A message's key picks
// its partition (FNV-1a hash, the same key always the same partition), so
// messages with one key keep their publish order. Publish returns nil only
// when Kafka acknowledged every message (acks from all in-sync replicas).
//
// Subscribe: each call joins topic's consumer group with its own client.
// One goroutine per claimed partition hands the handler batches of the
// messages already fetched (up to MaxBatch), in offset order, marks the
// batch's offsets after the handler returned nil, and on error hands the
// same batch again after a backoff (nothing is skipped). Marked offsets are
// committed in the background every CommitInterval, and when the session
// ends (Close, rebalance) before the member leaves the group, so a clean
// stop or a rebalance redelivers nothing that was handled. A crash loses
// the uncommitted work (at most about a CommitInterval of handled batches,
// plus the batches in hand), which the partition's next owner receives
// again: delivery is at least once and handlers must be idempotent. Any number of groups read one topic, each
// receiving every message.
//
// Topics the bus touches are created (once per process) with Partitions
// partitions unless NoCreateTopics is set.
type Kafka struct {
	cfg   KafkaConfig
	log   *slog.Logger
	admin sarama.ClusterAdmin // owns client
	prod  sarama.AsyncProducer

	closing   chan struct{} // closed when Close starts
	closeOnce sync.Once
	prodDone  sync.WaitGroup // result readers of prod
	subsWG    sync.WaitGroup // consumer group loops

	mu     sync.RWMutex // held for reading while sending to prod.Input
	closed bool
	subs   map[*kafkaSub]struct{}

	topicsMu sync.Mutex
	topics   map[string]*topicInit
}

var _ Bus = (*Kafka)(nil)

type topicInit struct {
	done chan struct{}
	err  error
}

// pubCall tracks one Publish call's messages until Kafka acknowledged
// them all.
type pubCall struct {
	pending atomic.Int64
	err     atomic.Pointer[error] // first failure
	done    chan struct{}
}

func (c *pubCall) complete(n int64, err error) {
	if err != nil {
		c.err.CompareAndSwap(nil, &err)
	}
	if c.pending.Add(-n) == 0 {
		close(c.done)
	}
}

// NewKafka connects to cfg.Brokers and starts the producer. ctx bounds
// the connection attempts. log may be nil (slog.Default).
func NewKafka(ctx context.Context, cfg KafkaConfig, log *slog.Logger) (*Kafka, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	sc, err := cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	client, err := newSaramaClient(ctx, cfg.Brokers, sc)
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("bus: kafka: admin: %w", err)
	}
	prod, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("bus: kafka: producer: %w", err)
	}
	k := &Kafka{
		cfg:     cfg,
		log:     log.With("component", "bus.kafka"),
		admin:   admin,
		prod:    prod,
		closing: make(chan struct{}),
		subs:    make(map[*kafkaSub]struct{}),
		topics:  make(map[string]*topicInit),
	}
	k.prodDone.Add(2)
	go k.readSuccesses()
	go k.readErrors()
	return k, nil
}

// newSaramaClient connects a sarama client, giving up when ctx ends.
func newSaramaClient(ctx context.Context, brokers []string, sc *sarama.Config) (sarama.Client, error) {
	type result struct {
		c   sarama.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(brokers, sc)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("bus: kafka: connect %v: %w", brokers, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() { // close the client if it connects after all
			if r := <-ch; r.err == nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("bus: kafka: connect %v: %w", brokers, ctx.Err())
	}
}

func (k *Kafka) readSuccesses() {
	defer k.prodDone.Done()
	for m := range k.prod.Successes() {
		kafkaPublished.WithLabelValues(m.Topic).Inc()
		m.Metadata.(*pubCall).complete(1, nil)
	}
}

func (k *Kafka) readErrors() {
	defer k.prodDone.Done()
	for pe := range k.prod.Errors() {
		kafkaPublishErrors.WithLabelValues(pe.Msg.Topic).Inc()
		k.log.Warn("kafka publish failed", "topic", pe.Msg.Topic, "err", pe.Err)
		pe.Msg.Metadata.(*pubCall).complete(1, fmt.Errorf("bus: kafka: publish to %s: %w", pe.Msg.Topic, pe.Err))
	}
}

// ensureTopic creates topic once per process (unless NoCreateTopics).
// Concurrent callers wait for the first one; a failure is retried by the
// next caller.
func (k *Kafka) ensureTopic(ctx context.Context, topic string) error {
	if k.cfg.NoCreateTopics {
		return nil
	}
	k.topicsMu.Lock()
	ti := k.topics[topic]
	creator := ti == nil
	if creator {
		ti = &topicInit{done: make(chan struct{})}
		k.topics[topic] = ti
	}
	k.topicsMu.Unlock()
	if creator {
		ti.err = k.createTopic(topic)
		if ti.err != nil {
			k.topicsMu.Lock()
			delete(k.topics, topic)
			k.topicsMu.Unlock()
		}
		close(ti.done)
	}
	select {
	case <-ti.done:
		return ti.err
	case <-ctx.Done():
		return fmt.Errorf("bus: kafka: create topic %s: %w", topic, ctx.Err())
	}
}

func (k *Kafka) createTopic(topic string) error {
	detail := &sarama.TopicDetail{
		NumPartitions:     k.cfg.Partitions,
		ReplicationFactor: k.cfg.ReplicationFactor,
	}
	if len(k.cfg.TopicConfig) > 0 {
		detail.ConfigEntries = make(map[string]*string, len(k.cfg.TopicConfig))
		for name, v := range k.cfg.TopicConfig {
			detail.ConfigEntries[name] = &v
		}
	}
	err := k.admin.CreateTopic(topic, detail, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("bus: kafka: create topic %s: %w", topic, err)
	}
	if err == nil {
		k.log.Info("kafka topic created", "topic", topic, "partitions", k.cfg.Partitions)
	}
	return nil
}

// Publish sends msgs and waits until Kafka acknowledged all of them. If
// ctx ends first it returns ctx's error; messages already handed to the
// producer may still be written (the caller must treat them as maybe
// published, as with any timeout). It fails with ErrClosed after Close.
// The first error of any message is returned.
func (k *Kafka) Publish(ctx context.Context, msgs ...Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: publish: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	if k.isClosed() {
		return ErrClosed
	}
	var last string
	for i := range msgs {
		t := msgs[i].Topic
		if t == "" {
			return errors.New("bus: publish: empty topic")
		}
		if t != last {
			if err := k.ensureTopic(ctx, t); err != nil {
				return err
			}
			last = t
		}
	}
	call := &pubCall{done: make(chan struct{})}
	n := int64(len(msgs))
	call.pending.Store(n)
	k.mu.RLock()
	if k.closed {
		k.mu.RUnlock()
		return ErrClosed
	}
	for i := range msgs {
		m := &msgs[i]
		pm := &sarama.ProducerMessage{Topic: m.Topic, Value: sarama.ByteEncoder(m.Value), Metadata: call}
		if m.Key != "" {
			pm.Key = sarama.StringEncoder(m.Key)
		}
		var err error
		select {
		case k.prod.Input() <- pm:
		case <-ctx.Done():
			err = fmt.Errorf("bus: publish: %w", ctx.Err())
		case <-k.closing:
			err = ErrClosed
		}
		if err != nil {
			k.mu.RUnlock()
			call.complete(n-int64(i), nil) // the unsent ones
			return err
		}
	}
	k.mu.RUnlock()
	select {
	case <-call.done:
		if p := call.err.Load(); p != nil {
			return *p
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bus: publish: %w", ctx.Err())
	}
}

// Subscribe joins group on topic (creating the topic if needed) and
// consumes it in the background until ctx ends or the bus closes. It
// returns once the group's client is connected; joining the group and the
// first partition assignment happen in the background (a new group starts
// at InitialOffset, so nothing published meanwhile is missed).
func (k *Kafka) Subscribe(ctx context.Context, topic, group string, h Handler) error {
	if topic == "" || group == "" {
		return errors.New("bus: subscribe: empty topic or group")
	}
	if h == nil {
		return errors.New("bus: subscribe: nil handler")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: subscribe: %w", err)
	}
	if k.isClosed() {
		return ErrClosed
	}
	if err := k.ensureTopic(ctx, topic); err != nil {
		return err
	}
	// A config of its own: the sticky balancer keeps per-member state.
	sc, err := k.cfg.saramaConfig()
	if err != nil {
		return err
	}
	client, err := newSaramaClient(ctx, k.cfg.Brokers, sc)
	if err != nil {
		return err
	}
	cg, err := sarama.NewConsumerGroupFromClient(group, client)
	if err != nil {
		client.Close()
		return fmt.Errorf("bus: kafka: consumer group %s: %w", group, err)
	}
	subCtx, cancel := context.WithCancel(ctx)
	s := &kafkaSub{
		k:      k,
		topic:  topic,
		group:  group,
		h:      h,
		client: client,
		cg:     cg,
		cancel: cancel,
		log:    k.log.With("topic", topic, "group", group),

		consumed:     kafkaConsumed.WithLabelValues(topic, group),
		redeliveries: kafkaRedeliveries.WithLabelValues(topic, group),
		sessions:     kafkaSessions.WithLabelValues(topic, group),
	}
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		cancel()
		cg.Close()
		client.Close()
		return ErrClosed
	}
	k.subs[s] = struct{}{}
	k.subsWG.Add(1)
	k.mu.Unlock()
	go s.run(subCtx)
	return nil
}

func (k *Kafka) isClosed() bool {
	select {
	case <-k.closing:
		return true
	default:
		return false
	}
}

// Close stops the consumers (cancelling running handlers' ctx, leaving
// their groups; uncommitted batches go to the groups' other members),
// then flushes the producer: Publish calls already past their hand-off
// get their acknowledgements. Later Publish and Subscribe calls fail with
// ErrClosed. Close is idempotent.
func (k *Kafka) Close() error {
	var err error
	first := false
	k.closeOnce.Do(func() {
		first = true
		close(k.closing)
		k.mu.Lock() // waits for Publish calls handing messages over
		k.closed = true
		for s := range k.subs {
			s.cancel()
		}
		k.mu.Unlock()
		k.subsWG.Wait()

		k.prod.AsyncClose()
		k.prodDone.Wait()
		if e := k.admin.Close(); e != nil {
			err = fmt.Errorf("bus: kafka: close: %w", e)
		}
	})
	if !first {
		k.subsWG.Wait()
		k.prodDone.Wait()
	}
	return err
}

// kafkaSub is one Subscribe call: a consumer group member.
type kafkaSub struct {
	k      *Kafka
	topic  string
	group  string
	h      Handler
	client sarama.Client
	cg     sarama.ConsumerGroup
	cancel context.CancelFunc
	log    *slog.Logger

	consumed     prometheus.Counter
	redeliveries prometheus.Counter
	sessions     prometheus.Counter
}

func (s *kafkaSub) run(ctx context.Context) {
	defer s.k.subsWG.Done()
	defer func() {
		s.k.mu.Lock()
		delete(s.k.subs, s)
		s.k.mu.Unlock()
	}()
	defer s.cancel()
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range s.cg.Errors() {
			s.log.Warn("kafka consumer error", "err", err)
		}
	}()
	backoff := s.k.cfg.RetryBackoff
	for ctx.Err() == nil {
		err := s.cg.Consume(ctx, []string{s.topic}, s)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			backoff = s.k.cfg.RetryBackoff
			continue // a rebalance ended the session: join again
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			break
		}
		s.log.Warn("kafka consume failed, retrying", "err", err, "backoff", backoff)
		if !sleepCtx(ctx, backoff) {
			break
		}
		backoff = min(2*backoff, s.k.cfg.MaxRetryBackoff)
	}
	if err := s.cg.Close(); err != nil { // leaves the group at once
		s.log.Debug("kafka consumer group close", "err", err)
	}
	<-errsDone
	if err := s.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		s.log.Debug("kafka client close", "err", err)
	}
}

// Setup implements sarama.ConsumerGroupHandler.
func (s *kafkaSub) Setup(sess sarama.ConsumerGroupSession) error {
	s.sessions.Inc()
	s.log.Debug("kafka group session", "generation", sess.GenerationID(), "claims", sess.Claims())
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler.
func (s *kafkaSub) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim implements sarama.ConsumerGroupHandler: it hands one
// partition's messages to the handler in batches and marks each batch after
// the handler succeeded (sarama commits the marks, see saramaConfig).
func (s *kafkaSub) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	in := claim.Messages()
	maxBatch := s.k.cfg.MaxBatch
	raw := make([]*sarama.ConsumerMessage, 0, maxBatch)
	for {
		raw = raw[:0]
		select {
		case m, ok := <-in:
			if !ok {
				return nil
			}
			raw = append(raw, m)
		case <-ctx.Done():
			return nil
		}
	fill:
		for len(raw) < maxBatch {
			select {
			case m, ok := <-in:
				if !ok {
					break fill
				}
				raw = append(raw, m)
			default:
				break fill
			}
		}
		batch := make([]Message, len(raw))
		for i, m := range raw {
			batch[i] = Message{Topic: m.Topic, Key: string(m.Key), Value: m.Value}
		}
		ok := s.handle(ctx, batch)
		if ok {
			// Committed by the next periodic commit or by the session's
			// release, which waits for this function to return.
			sess.MarkMessage(raw[len(raw)-1], "")
			s.consumed.Add(float64(len(batch)))
		}
		if !ok || ctx.Err() != nil {
			return nil // session over: an unhandled batch stays unmarked
		}
	}
}

// handle calls the handler until it succeeds (true) or ctx ends (false).
// A handler that returns nil after ctx ended (a draining job finishes its
// batch) still counts as a success: the batch is marked and committed on
// the session's release instead of being handled again by the next owner.
func (s *kafkaSub) handle(ctx context.Context, batch []Message) bool {
	backoff := s.k.cfg.RetryBackoff
	for {
		if ctx.Err() != nil {
			return false
		}
		err := s.h(ctx, batch)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			// The session ended (rebalance, Close, crash) and the
			// handler did not finish: the next owner gets the batch.
			return false
		}
		s.redeliveries.Inc()
		s.log.Warn("kafka handler failed, redelivering", "partition_batch", len(batch), "err", err, "backoff", backoff)
		if !sleepCtx(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, s.k.cfg.MaxRetryBackoff)
	}
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
