// Package discovery finds the processes of the distributed mode: comets
// and logics announce themselves (Registrar) and their callers follow the
// live list (Watcher). Etcd is the implementation of a cluster (leases
// with a TTL kept alive, so a crashed process disappears on its own);
// Static serves small fixed setups.
package discovery

import (
	"context"
	"maps"
	"slices"
	"strings"
)

// Instance is one registered process.
type Instance struct {
	Service string            `json:"service"` // "comet" | "logic"
	Name    string            `json:"name"`    // node name, unique per service
	Addr    string            `json:"addr"`    // RPC host:port
	Meta    map[string]string `json:"meta,omitempty"`
}

// Registrar announces an instance while the process lives (etcd: a lease
// with TTL kept alive, re-registered when the lease is lost). deregister
// removes it at once.
type Registrar interface {
	Register(ctx context.Context, in Instance) (deregister func(context.Context) error, err error)
}

// Watcher reports the live instances of a service: the current list first,
// then the whole list again after every change, until ctx ends (the
// channel is then closed). A slow reader misses intermediate lists, never
// the latest one.
type Watcher interface {
	Watch(ctx context.Context, service string) (<-chan []Instance, error)
}

func (in Instance) clone() Instance {
	in.Meta = maps.Clone(in.Meta)
	return in
}

// sortInstances sorts by name (then address).
func sortInstances(list []Instance) {
	slices.SortFunc(list, func(a, b Instance) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Addr, b.Addr)
	})
}

// offer replaces any list out still holds with list (out has capacity 1
// and one writer): the reader always gets the latest.
func offer(out chan []Instance, list []Instance) {
	select {
	case <-out:
	default:
	}
	out <- list
}

// Static is a fixed list of instances, for setups without etcd.
type Static struct {
	services map[string][]Instance
}

var (
	_ Registrar = (*Static)(nil)
	_ Watcher   = (*Static)(nil)
)

// NewStatic returns a Static serving services (service -> instances),
// which it copies.
func NewStatic(services map[string][]Instance) *Static {
	s := &Static{services: make(map[string][]Instance, len(services))}
	for svc, list := range services {
		cp := make([]Instance, len(list))
		for i, in := range list {
			cp[i] = in.clone()
			if cp[i].Service == "" {
				cp[i].Service = svc
			}
		}
		sortInstances(cp)
		s.services[svc] = cp
	}
	return s
}

// Register does nothing: the list is fixed.
func (s *Static) Register(context.Context, Instance) (func(context.Context) error, error) {
	return func(context.Context) error { return nil }, nil
}

// Watch sends the service's list once and closes the channel when ctx
// ends.
func (s *Static) Watch(ctx context.Context, service string) (<-chan []Instance, error) {
	out := make(chan []Instance, 1)
	list := make([]Instance, len(s.services[service]))
	for i, in := range s.services[service] {
		list[i] = in.clone()
	}
	out <- list
	go func() {
		<-ctx.Done()
		close(out)
	}()
	return out, nil
}
