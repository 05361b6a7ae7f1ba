package protocol

import (
	"errors"
	"strconv"
)

// Limits shared by every tier that accepts rooms and accepts lists from
// clients (comet Op 12 and Op 14, logic's Op 7 and the push API), so that
// what one accepts the others accept too.
const (
	// MaxRoomLen bounds a room key ("type://id"), in bytes.
	MaxRoomLen = 128
	// MaxAccepts bounds a connection's accepts list (business ops it
	// wants from key pushes and broadcasts).
	MaxAccepts = 256
)

// ErrBadRoom is the error of ValidRoom.
var ErrBadRoom = errors.New("protocol: bad room key")

// ValidRoom checks a room key: at most MaxRoomLen bytes of printable ASCII
// (0x21-0x7e) other than ',' (room keys travel in comma-separated lists and
// in logs). The empty string is valid: it means "no room" (Op 12 with an
// empty body leaves the room).
func ValidRoom(room string) error {
	if len(room) > MaxRoomLen {
		return errors.Join(ErrBadRoom, errors.New("longer than "+strconv.Itoa(MaxRoomLen)+" bytes"))
	}
	for i := 0; i < len(room); i++ {
		if c := room[i]; c <= ' ' || c > '~' || c == ',' {
			return errors.Join(ErrBadRoom, errors.New("byte "+strconv.Itoa(i)+" is not printable ASCII or is a comma"))
		}
	}
	return nil
}
