package service

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/google/uuid"

	"reservation"
)

// A page token is a keyset position (the last row's start and id) plus a fingerprint of the
// filter it belongs to, so a token cannot be replayed against another filter.
const (
	tokenVersion = 1
	tokenLen     = 1 + 8 + 8 + 16
)

func filterPrint(f *reservation.Filter) uint64 {
	h := fnv.New64a()
	for _, s := range []string{f.ResourceID, f.UserID} {
		binary.Write(h, binary.BigEndian, uint32(len(s)))
		h.Write([]byte(s))
	}
	binary.Write(h, binary.BigEndian, int64(f.Status))
	binary.Write(h, binary.BigEndian, f.Start.UnixMicro())
	binary.Write(h, binary.BigEndian, f.End.UnixMicro())
	binary.Write(h, binary.BigEndian, f.Desc)
	return h.Sum64()
}

func encodeToken(f *reservation.Filter, last *reservation.Reservation) (string, error) {
	id, err := uuid.Parse(last.ID)
	if err != nil {
		return "", fmt.Errorf("page token for reservation %q: %w", last.ID, err)
	}
	b := make([]byte, 0, tokenLen)
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(last.Start.UnixMicro()))
	b = binary.BigEndian.AppendUint64(b, filterPrint(f))
	b = append(b, id[:]...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// decodeToken returns the position a token holds, or false when it is malformed or was made
// for another filter.
func decodeToken(f *reservation.Filter, token string) (*reservation.Cursor, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != tokenLen || b[0] != tokenVersion {
		return nil, false
	}
	if binary.BigEndian.Uint64(b[9:17]) != filterPrint(f) {
		return nil, false
	}
	id, err := uuid.FromBytes(b[17:])
	if err != nil {
		return nil, false
	}
	start := time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC()
	return &reservation.Cursor{Start: start, ID: id.String()}, true
}
