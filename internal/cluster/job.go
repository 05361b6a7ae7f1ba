package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/goimdev/goim/internal/bus"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/rpc"
	"github.com/goimdev/goim/job"
	"github.com/goimdev/goim/logic"
)

// PersistGroup is the consumer group of the job persisters on
// bus.TopicMsg.
const PersistGroup = "goim-persist"

// Job is a running `goim job`. It persists the messages the logics put on
// Kafka (bus.TopicMsg, keyed by conversation: one job owns a conversation
// at a time), publishes their events and SendAcks, and pushes everything on
// bus.TopicPush to the comets that hold the targets (found in the Redis
// session registry; the comets come from discovery). Offsets are committed
// only once the work is done.
type Job struct {
	cfg     config.Config
	log     *slog.Logger
	job     *job.Job
	svc     *logic.Service
	bus     bus.Bus
	comets  *rpc.Comets
	ops     *opsServer
	closers []func() error

	persistCancel context.CancelFunc
	persistMu     sync.Mutex
	persistDone   bool           // set by Shutdown: no new persist batch
	persistWG     sync.WaitGroup // persist batches running

	shutdownOnce sync.Once
	shutdownErr  error
}

// NewJob builds a job node on MySQL, Redis, Kafka and discovery.
func NewJob(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Job, err error) {
	quietKitex()
	j := &Job{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			j.closeBackends()
		}
	}()
	d, err := openDiscovery(ctx, &cfg, ServiceComet)
	if err != nil {
		return nil, err
	}
	j.closers = append(j.closers, d.close)
	dom, err := openDomain(ctx, cfg, randomSecret(), log, &j.closers)
	if err != nil {
		return nil, err
	}
	j.svc, j.bus = dom.svc, dom.bus
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if j.comets, err = rpc.NewComets(wctx, d.watch, rpc.ClientConfig{Timeout: cfg.Job.PushTimeout, Logger: log}); err != nil {
		return nil, fmt.Errorf("comets: %w", err)
	}
	j.closers = append(j.closers, j.comets.Close)
	if j.job, err = job.New(cfg.Job, job.Deps{Bus: j.bus, Sessions: dom.sessions, Comets: j.comets}, log.With("component", "job")); err != nil {
		return nil, err
	}
	return j, nil
}

// Start subscribes to both topics and serves health and metrics.
func (j *Job) Start(ctx context.Context) error {
	if err := j.job.Start(ctx); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j.persistCancel = cancel
	if err := j.bus.Subscribe(pctx, bus.TopicMsg, PersistGroup, j.persist(j.svc.PersistHandler())); err != nil {
		return fmt.Errorf("subscribe %s: %w", bus.TopicMsg, err)
	}
	var err error
	if j.ops, err = startOps(j.cfg.HTTPAddr, nil, j.log); err != nil {
		return err
	}
	j.ops.ready.Store(true)
	j.log.Info("goim job ready", "http", j.ops.addr(), "comets", j.comets.Names())
	return nil
}

// errStopping refuses a persist batch offered after shutdown began: the bus
// redelivers it to another job.
var errStopping = errors.New("cluster: job stopping")

// persist wraps the persister so that Shutdown can wait for a batch in
// progress to finish.
func (j *Job) persist(h bus.Handler) bus.Handler {
	return func(ctx context.Context, msgs []bus.Message) error {
		j.persistMu.Lock()
		if j.persistDone {
			j.persistMu.Unlock()
			return errStopping
		}
		j.persistWG.Add(1) // under persistMu: never concurrent with Shutdown's Wait
		j.persistMu.Unlock()
		defer j.persistWG.Done()
		return h(ctx, msgs)
	}
}

// Shutdown stops persisting (a batch in progress is finished), then the push
// stage (pushes in flight are finished; their offsets committed), then
// closes the backends.
func (j *Job) Shutdown(ctx context.Context) error {
	j.shutdownOnce.Do(func() { j.shutdownErr = j.shutdown(ctx) })
	return j.shutdownErr
}

func (j *Job) shutdown(ctx context.Context) error {
	var errs []error
	if j.ops != nil {
		j.ops.ready.Store(false)
	}
	j.persistMu.Lock()
	j.persistDone = true
	j.persistMu.Unlock()
	if j.persistCancel != nil {
		j.persistCancel()
	}
	j.persistWG.Wait() // the batch in progress finishes; its offsets are committed when the bus's session ends
	if err := j.svc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("persist: %w", err))
	}
	if err := j.job.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("job: %w", err))
	}
	if j.ops != nil {
		errs = append(errs, j.ops.stop(ctx))
	}
	errs = append(errs, j.closeBackends())
	return errors.Join(errs...)
}

func (j *Job) closeBackends() error { return closeAll(&j.closers) }
