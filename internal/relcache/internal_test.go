package relcache

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goimdev/goim/internal/store"
)

type nopSource struct{}

func (nopSource) Friend(context.Context, int64, int64) (*store.Friend, error) {
	return nil, store.ErrNotFound
}
func (nopSource) IsBlocked(context.Context, int64, int64) (bool, error) { return true, nil }
func (nopSource) Group(context.Context, int64) (*store.Group, error) {
	return &store.Group{}, nil
}
func (nopSource) Member(context.Context, int64, int64) (*store.Member, error) {
	return nil, store.ErrNotFound
}

func TestMetrics(t *testing.T) {
	c := New(NewMemory(MemoryConfig{}), nopSource{}, Config{})
	ctx := t.Context()
	type counts struct{ hit, miss float64 }
	read := func() (r [numLookupKinds]counts) {
		for k := range numLookupKinds {
			r[k] = counts{testutil.ToFloat64(lookupHits[k]), testutil.ToFloat64(lookupMisses[k])}
		}
		return r
	}
	before := read()
	for range 3 {
		c.IsFriend(ctx, 1, 2)
		c.IsBlocked(ctx, 1, 2)
		c.Membership(ctx, 1, 2)
	}
	after := read()
	for k := range numLookupKinds {
		if d := (counts{after[k].hit - before[k].hit, after[k].miss - before[k].miss}); d != (counts{2, 1}) {
			t.Errorf("%s: +%v hits +%v misses, want +2 +1", lookupKindNames[k], d.hit, d.miss)
		}
	}
	inv := testutil.ToFloat64(metricInvalidations.WithLabelValues("group"))
	c.InvalidateGroup(ctx, 1)
	if d := testutil.ToFloat64(metricInvalidations.WithLabelValues("group")) - inv; d != 1 {
		t.Errorf("group invalidations +%v, want +1", d)
	}
}

func TestValueCodec(t *testing.T) {
	values := []Value{
		{},
		{Found: true, MuteAll: true, Dismissed: true, Role: store.RoleOwner, MutedUntil: -1, Gen: 1<<64 - 1},
		{Found: true, Role: store.RoleAdmin, MutedUntil: 1<<63 - 1, Gen: 9},
	}
	for _, v := range values {
		s := encodeValue(v)
		if len(s) != valueLen {
			t.Fatalf("len %d", len(s))
		}
		got, err := decodeValue(s)
		if err != nil || got != v {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", v, got, err)
		}
	}
	for _, bad := range []string{"", "V", "L12345678", string(make([]byte, valueLen)), "V\x08" + string(make([]byte, valueLen-2))} {
		if _, err := decodeValue(bad); err == nil {
			t.Errorf("decodeValue(%q) accepted", bad)
		}
	}
	if l := encodeLease(5); !isLease(l) || isLease(encodeValue(Value{})) {
		t.Fatal("lease and value encodings overlap")
	}
}

// FuzzDecodeValue: values read from Redis are network input.
func FuzzDecodeValue(f *testing.F) {
	f.Add(encodeValue(Value{Found: true, Role: store.RoleAdmin, MutedUntil: 12345, Gen: 7}))
	f.Add(encodeLease(3))
	f.Add("")
	f.Add("V\xff")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := decodeValue(s)
		if err != nil {
			return
		}
		if isLease(s) {
			t.Fatalf("%q decodes as a value and is a lease", s)
		}
		if again := encodeValue(v); again != s {
			t.Fatalf("decode(%q) = %+v re-encodes as %q", s, v, again)
		}
	})
}
