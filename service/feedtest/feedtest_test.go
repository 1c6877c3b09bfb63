package feedtest

import (
	"strings"
	"testing"

	pb "reservation/proto/reservation/v1"
)

func msg(seq uint64, op pb.ReservationUpdateType, id string, version int64, note string) *pb.ListenResponse {
	return &pb.ListenResponse{Seq: seq, Op: op, Reservation: &pb.Reservation{Id: id, Version: version, Note: note, ResourceId: "room"}}
}

// calls is a run of crafted calls: a, b acknowledged created, a confirmed (twice, the second a
// no-op with the same version), b cancelled; a Reserve refused; a Reserve of unknown outcome
// (note r9) and a Cancel of a of unknown outcome.
func calls() *Calls {
	var c Calls
	c.Acked(Create, &pb.Reservation{Id: "a", Version: 1})
	c.Acked(Create, &pb.Reservation{Id: "b", Version: 1})
	c.Acked(Update, &pb.Reservation{Id: "a", Version: 2})
	c.Acked(Update, &pb.Reservation{Id: "a", Version: 2})
	c.Acked(Delete, &pb.Reservation{Id: "b", Version: 2})
	c.Refused()
	c.Unknown(Create, "", "r9")
	c.Unknown(Delete, "a", "")
	return &c
}

// The feed those calls make, after seq 10, with the unknown Reserve done and the unknown
// Cancel not.
func feed() []*pb.ListenResponse {
	return []*pb.ListenResponse{
		msg(11, Create, "a", 1, "r1"),
		msg(12, Create, "b", 1, "r2"),
		msg(13, Create, "x", 1, "r9"),
		msg(14, Update, "a", 2, "r1"),
		msg(15, Delete, "b", 2, "r2"),
	}
}

func TestCheckPasses(t *testing.T) {
	if d := calls().Check(10, feed(), feed()); len(d) != 0 {
		t.Fatalf("a feed that matches the calls: %v", d)
	}
}

// Each broken feed must fail the comparison, with the kind of discrepancy named.
func TestCheckFails(t *testing.T) {
	with := func(f func([]*pb.ListenResponse) []*pb.ListenResponse) []*pb.ListenResponse { return f(feed()) }
	for _, tc := range []struct {
		name  string
		heard [][]*pb.ListenResponse
		want  string
	}{
		{"a refused call wrote", [][]*pb.ListenResponse{with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			return append(f, msg(16, Create, "z", 1, "refused"))
		})}, "no call made it"},
		{"an acknowledged change is dropped", [][]*pb.ListenResponse{with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			f = append(f[:3], f[4:]...) // the confirm of a
			for i := range f[3:] {
				f[3+i].Seq--
			}
			return f
		})}, "acknowledged UPDATE a v2 never heard"},
		{"an acknowledged change with another version", [][]*pb.ListenResponse{with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			f[3].Reservation.Version = 3
			return f
		})}, "never heard"},
		{"a gap", [][]*pb.ListenResponse{with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			f[4].Seq = 17
			return f
		})}, "gap: seq 17 after 14"},
		{"a change heard twice", [][]*pb.ListenResponse{with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			return append(f, msg(16, Create, "a", 1, "r1"))
		})}, "heard 2 times"},
		{"one unknown call explains only one change", [][]*pb.ListenResponse{with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			return append(f, msg(16, Create, "y", 1, "r9"))
		})}, "no call made it"},
		{"listeners differ", [][]*pb.ListenResponse{feed(), with(func(f []*pb.ListenResponse) []*pb.ListenResponse {
			f[0], f[1] = msg(11, Create, "b", 1, "r2"), msg(12, Create, "a", 1, "r1")
			return f
		})}, "listeners 0 and 1 differ"},
		{"a listener that heard less", [][]*pb.ListenResponse{feed(), feed()[:4]}, "never heard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := calls().Check(10, tc.heard...)
			if !strings.Contains(strings.Join(d, "\n"), tc.want) {
				t.Errorf("Check = %q, want a line with %q", d, tc.want)
			}
		})
	}
}

func TestExclude(t *testing.T) {
	c := calls()
	c.Exclude("lin-")
	f := feed()
	m := msg(16, Create, "l", 1, "")
	m.Reservation.ResourceId = "lin-0"
	if d := c.Check(10, append(f, m)); len(d) != 0 {
		t.Fatalf("a change of an excluded resource: %v", d)
	}
}
