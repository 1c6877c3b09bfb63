//go:build exportbreak

package jetstream

import (
	"os"
	"strings"
)

// BreakEnv names what to break in an exporter of a test build (-tags exportbreak), to show
// that the tests' checks fail on an exporter without it: a comma-separated list of msgid (no
// Nats-Msg-Id), expectedseq (no Nats-Expected-Last-Sequence) and fingerprint (no
// fingerprint check on resume).
const BreakEnv = "RESERVATION_CHAOS_EXPORT_BREAK"

func testBreak() breakage {
	var b breakage
	for _, s := range strings.Split(os.Getenv(BreakEnv), ",") {
		switch s {
		case "msgid":
			b |= breakMsgID
		case "expectedseq":
			b |= breakExpectedSeq
		case "fingerprint":
			b |= breakFingerprint
		}
	}
	return b
}
