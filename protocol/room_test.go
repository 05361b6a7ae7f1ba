package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestValidRoom(t *testing.T) {
	tests := []struct {
		room string
		ok   bool
	}{
		{"", true},
		{"live://1000", true},
		{strings.Repeat("r", MaxRoomLen), true},
		{strings.Repeat("r", MaxRoomLen+1), false},
		{"a,b", false},
		{"a b", false},
		{"a\tb", false},
		{"caf\xc3\xa9", false},
		{"a\x7f", false},
		{"~!@#$%^&*()", true},
	}
	for _, tc := range tests {
		err := ValidRoom(tc.room)
		if (err == nil) != tc.ok {
			t.Errorf("ValidRoom(%q) = %v, want ok=%v", tc.room, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadRoom) {
			t.Errorf("ValidRoom(%q) = %v, not ErrBadRoom", tc.room, err)
		}
	}
}

func FuzzValidRoom(f *testing.F) {
	f.Add("live://1")
	f.Add("a,b")
	f.Fuzz(func(t *testing.T, room string) {
		if ValidRoom(room) != nil {
			return
		}
		if len(room) > MaxRoomLen || strings.ContainsAny(room, ", ") {
			t.Fatalf("ValidRoom accepted %q", room)
		}
	})
}
