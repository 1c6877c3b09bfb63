// Package jetstream exports the change feed to a NATS JetStream stream whose sequence is the
// feed's seq: stream message i is the change with seq i, for every i from the stream's first
// sequence on, with no gap and no duplicate.
//
// One replica exports at a time, elected through its own lease in the database
// (repo.Exporter). The stream fences it as well: every message is published with
// Nats-Msg-Id = seq and Nats-Expected-Last-Sequence = seq-1, so a publish that does not
// follow the stream's last message is refused (a second exporter that wrongly believes it
// leads, or a retry after the duplicate window), and a retry within the window is
// acknowledged as a duplicate rather than stored twice. After any error or restart the
// exporter reads the stream's last message and checks its fingerprint against the database's
// change of that seq before it goes on; when they differ the feed and the stream tell
// different histories (a lossy database failover re-stamped seqs), and the export halts
// rather than publish a continuation of the wrong one (Exporter.Halted).
//
// The message format is documented in docs/nats.md; this file is its one definition.
package jetstream

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"reservation"
)

// The headers of an exported change, besides JetStream's own Nats-Msg-Id (the seq, in
// decimal) and Nats-Expected-Last-Sequence (seq-1).
const (
	// HeaderCursor is the change's Listen cursor (ListenResponse.cursor): a Listen call
	// can resume after it, and it names the change's fingerprint.
	HeaderCursor = "Reservation-Cursor"
	// HeaderFingerprint is the change's fingerprint (reservation.Change.Fingerprint), 16
	// lowercase hex digits: what the exporter checks against the database on resume.
	HeaderFingerprint = "Reservation-Fingerprint"
	// HeaderOp is the op's proto name: RESERVATION_UPDATE_TYPE_CREATED, ...
	HeaderOp = "Reservation-Op"
	// HeaderActor and HeaderReason are who made the change and why, percent-encoded
	// (url.PathEscape) so that any text fits a header value.
	HeaderActor  = "Reservation-Actor"
	HeaderReason = "Reservation-Reason"
	// HeaderCommittedAt is when the change was sequenced, RFC 3339 with nanoseconds, UTC.
	HeaderCommittedAt = "Reservation-Committed-At"
	// HeaderContentType names the body's encoding: ContentType.
	HeaderContentType = "Content-Type"
)

// ContentType is the body of every exported message: the change's ListenResponse
// (reservation.v1), in protobuf's binary encoding.
const ContentType = "application/x-protobuf; messageType=reservation.v1.ListenResponse"

// notMoved is the third subject token of a change that is not a move between resources. No
// encoded resource id is "~": Token writes "~" only before two hex digits.
const notMoved = "~"

// Token encodes a resource id as one subject token: the bytes A-Z a-z 0-9 - _ stay as they
// are, every other byte is "~" and its two uppercase hex digits ("room.1" is "room~2E1", "a b"
// is "a~20b"). Tokens never hold ".", "*", ">" or white space, and two ids never share one.
func Token(resourceID string) string {
	var b strings.Builder
	for i := 0; i < len(resourceID); i++ {
		c := resourceID[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "~%02X", c)
		}
	}
	return b.String()
}

// Subject is where change c is published: "<prefix>.<resource>.<moved from>", the resource's
// Token, then for a move the Token of the resource it left, else "~". A consumer of one
// resource R filters "<prefix>.R.*" and "<prefix>.*.R" (FilterSubjects): the first holds R's
// own changes, the second the moves away from R, as Listen's resource filter does.
func Subject(prefix string, c *reservation.Change) string {
	from := notMoved
	if c.MovedFrom != "" && c.MovedFrom != c.Reservation.ResourceID {
		from = Token(c.MovedFrom)
	}
	return prefix + "." + Token(c.Reservation.ResourceID) + "." + from
}

// FilterSubjects are the subjects of resource's changes, for a consumer's FilterSubjects; of
// every change when resource is empty.
func FilterSubjects(prefix, resource string) []string {
	if resource == "" {
		return []string{prefix + ".>"}
	}
	t := Token(resource)
	return []string{prefix + "." + t + ".*", prefix + ".*." + t}
}

// message is change c as published: subject, headers and body. The fencing headers are
// set by the exporter.
func message(prefix string, c *reservation.Change, body []byte, op string) *nats.Msg {
	m := nats.NewMsg(Subject(prefix, c))
	m.Header.Set(HeaderContentType, ContentType)
	m.Header.Set(HeaderCursor, c.Cursor().String())
	m.Header.Set(HeaderFingerprint, fingerprint(c.Fingerprint()))
	m.Header.Set(HeaderOp, op)
	m.Header.Set(HeaderActor, url.PathEscape(c.Actor))
	m.Header.Set(HeaderReason, url.PathEscape(c.Reason))
	m.Header.Set(HeaderCommittedAt, c.CommittedAt.UTC().Format(time.RFC3339Nano))
	m.Data = body
	return m
}

func fingerprint(fp uint64) string { return fmt.Sprintf("%016x", fp) }

// Fingerprint reads a message's HeaderFingerprint; 0 when it has none.
func Fingerprint(h nats.Header) uint64 {
	fp, err := strconv.ParseUint(h.Get(HeaderFingerprint), 16, 64)
	if err != nil {
		return 0
	}
	return fp
}
