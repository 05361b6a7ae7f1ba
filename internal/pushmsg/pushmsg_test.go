package pushmsg

import (
	"bytes"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []Msg{
		{Type: Keys, Operation: 1000, Server: "comet-1", Keys: []string{"a", "b"}, Body: []byte("hello")},
		{Type: Room, Operation: 1001, Room: "live://1", Body: []byte{}},
		{Type: Broadcast, Operation: 5, Seq: 9, Speed: 100, Body: bytes.Repeat([]byte{1}, 3000)},
	}
	for _, m := range tests {
		var got Msg
		if err := got.Unmarshal(m.Marshal()); err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if len(m.Body) == 0 {
			m.Body = got.Body[:0]
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v, want %+v", got, m)
		}
	}
}

func TestCorrupt(t *testing.T) {
	good := (&Msg{Type: Keys, Server: "s", Keys: []string{"k"}, Body: []byte("b")}).Marshal()
	for i := 0; i < len(good); i++ {
		var m Msg
		if err := m.Unmarshal(good[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
	var m Msg
	if err := m.Unmarshal(append(append([]byte{}, good...), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	bad := append([]byte{}, good...)
	bad[1] = 99
	if err := m.Unmarshal(bad); err == nil {
		t.Fatal("unknown type accepted")
	}
	bad[0] = 2
	if err := m.Unmarshal(bad); err == nil {
		t.Fatal("unknown version accepted")
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add((&Msg{Type: Keys, Server: "s", Keys: []string{"k1", "k2"}, Body: []byte("b")}).Marshal())
	f.Add((&Msg{Type: Room, Room: "live://1"}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Msg
		if err := m.Unmarshal(b); err != nil {
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatal("re-marshal differs")
		}
	})
}
