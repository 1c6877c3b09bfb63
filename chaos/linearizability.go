package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
)

// The linearizability check: clients call Reserve, Cancel, Query and Get on a few resources,
// each call once, and record when each call began and returned and what it was told. Porcupine
// then searches for an order of the calls, each at an instant between its call and its
// answer, in which a resource that is simply the set of reservations it holds gives the very
// same answers. Reservations are windows on a grid of slots; two conflict when they overlap.
// No call makes a hold, so nothing expires. Reserve carries no request id, so that the
// conflict cache's shortcut is in play.

// Grid of the checked resources: slots of one hour from gridStart.
const (
	gridSlots = 8
	gridSlot  = time.Hour
)

var gridStart = time.Date(2032, 1, 5, 0, 0, 0, 0, time.UTC)

// linKind is the method of a checked call.
type linKind int

const (
	linReserve linKind = iota
	linCancel
	linQuery
	linGet
)

func (k linKind) String() string {
	return [...]string{"Reserve", "Cancel", "Query", "Get"}[k]
}

// held is a reservation the model holds: its tag (the note its Reserve gave it, unique to
// that call) and its window in slots, [from, to).
type held struct {
	tag      string
	from, to int
}

func (h held) String() string { return fmt.Sprintf("%s[%d–%d)", h.tag, h.from, h.to) }

// linInput is a checked call. Cancel and Get name the reservation by the tag of the Reserve
// that made it (the client knows its id).
type linInput struct {
	kind     linKind
	resource string
	tag      string
	from, to int // Reserve's window
}

// linResult is what a call was told.
type linResult int

const (
	resOK         linResult = iota
	resConflict             // Reserve: FAILED_PRECONDITION
	resNotFound             // Cancel, Get: NOT_FOUND
	resOpen                 // no definite answer: it may or may not have taken effect
	resUnexpected           // a definite answer the model has no place for
)

// linOutput is what a call was told: for Query, what was listed; for Get, the reservation.
type linOutput struct {
	result linResult
	code   codes.Code
	held   []held // Query: in order of start, then tag; Get: the one found
}

// resourceModel is the sequential specification: a resource is the set of reservations it
// holds, as a slice sorted by (from, tag). Histories are partitioned by resource.
var resourceModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			r := op.Input.(linInput).resource
			if by[r] == nil {
				order = append(order, r)
			}
			by[r] = append(by[r], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, r := range order {
			out = append(out, by[r])
		}
		return out
	},
	Init: func() any { return []held(nil) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.([]held), input.(linInput), output.(linOutput)
		switch in.kind {
		case linReserve:
			free := !slices.ContainsFunc(s, func(h held) bool { return h.from < in.to && in.from < h.to })
			switch out.result {
			case resOK:
				return free, add(s, held{in.tag, in.from, in.to})
			case resConflict:
				return !free, s
			case resOpen:
				// Taking effect where it is linearized, or not at all: the latter is the
				// same as taking effect after every other call, where nothing sees it.
				if free {
					return true, add(s, held{in.tag, in.from, in.to})
				}
				return true, s
			}
		case linCancel:
			i := slices.IndexFunc(s, func(h held) bool { return h.tag == in.tag })
			switch out.result {
			case resOK:
				return i >= 0, remove(s, i)
			case resNotFound:
				return i < 0, s
			case resOpen:
				return true, remove(s, i)
			}
		case linQuery:
			return out.result == resOpen || (out.result == resOK && slices.Equal(s, out.held)), s
		case linGet:
			i := slices.IndexFunc(s, func(h held) bool { return h.tag == in.tag })
			switch out.result {
			case resOpen:
				return true, s
			case resOK:
				return i >= 0 && len(out.held) == 1 && out.held[0] == s[i], s
			case resNotFound:
				return i < 0, s
			}
		}
		return false, s // a definite answer the model does not allow
	},
	Equal: func(a, b any) bool { return slices.Equal(a.([]held), b.([]held)) },
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		for _, e := range state.([]held) {
			fmt.Fprintf(h, "%s %d %d;", e.tag, e.from, e.to)
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		var call string
		switch in.kind {
		case linReserve:
			call = fmt.Sprintf("Reserve(%s [%d–%d))", in.tag, in.from, in.to)
		case linQuery:
			call = "Query()"
		default:
			call = fmt.Sprintf("%s(%s)", in.kind, in.tag)
		}
		switch out.result {
		case resOK:
			if in.kind == linQuery || in.kind == linGet {
				return fmt.Sprintf("%s → %v", call, out.held)
			}
			return call + " → OK"
		case resOpen:
			return fmt.Sprintf("%s → no answer (%s)", call, out.code)
		}
		return fmt.Sprintf("%s → %s", call, out.code)
	},
	DescribeState: func(state any) string { return fmt.Sprint(state.([]held)) },
}

func add(s []held, h held) []held {
	out := append(slices.Clone(s), h)
	slices.SortFunc(out, func(a, b held) int { return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.tag, b.tag)) })
	return out
}

func remove(s []held, i int) []held {
	if i < 0 {
		return s
	}
	return slices.Delete(slices.Clone(s), i, i+1)
}

// LinHistory is the record of the checked calls, split into phases (one per fault) whose
// calls use resources of their own, so that each phase is checked on its own.
type LinHistory struct {
	mu     sync.Mutex
	origin time.Time
	phases []*linPhase
	// ids of the reservations made, by tag, and the tags of each resource's, for Cancel and Get.
	ids   map[string]string
	tags  map[string][]string
	codes map[codes.Code]int // definite answers the model has no place for, by code
}

type linPhase struct {
	name      string
	resources []string
	ops       []porcupine.Operation
}

// NewLinHistory returns an empty history; Phase starts its first phase.
func NewLinHistory() *LinHistory {
	return &LinHistory{origin: time.Now(), ids: map[string]string{}, tags: map[string][]string{}, codes: map[codes.Code]int{}}
}

// Phase starts a phase named name, on resources fresh to it; calls begun from now on use them.
func (h *LinHistory) Phase(name string, resources int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := &linPhase{name: name}
	for i := range resources {
		p.resources = append(p.resources, fmt.Sprintf("lin-%d-%d", len(h.phases), i))
	}
	h.phases = append(h.phases, p)
}

func (h *LinHistory) now() int64 { return int64(time.Since(h.origin)) }

// LinClient calls Reserve, Cancel, Query and Get through random replicas until ctx ends, each
// call once, and records them in h.
func LinClient(ctx context.Context, client int, replicas []*Replica, h *LinHistory) {
	rng := rand.New(rand.NewPCG(uint64(client), 1515))
	for n := 0; ctx.Err() == nil; n++ {
		h.mu.Lock()
		p := h.phases[len(h.phases)-1]
		in := linInput{resource: p.resources[rng.IntN(len(p.resources))]}
		known := h.tags[in.resource]
		switch k := rng.IntN(20); {
		case k < 8 || len(known) == 0:
			in.kind, in.tag = linReserve, fmt.Sprintf("c%d-%d", client, n)
			in.from = rng.IntN(gridSlots)
			in.to = min(gridSlots, in.from+1+rng.IntN(3))
		case k < 12:
			in.kind, in.tag = linCancel, known[rng.IntN(len(known))]
		case k < 16:
			in.kind = linQuery
		default:
			in.kind, in.tag = linGet, known[rng.IntN(len(known))]
		}
		id := h.ids[in.tag]
		h.mu.Unlock()

		svc := replicas[rng.IntN(len(replicas))].Client
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		call := h.now()
		out, madeID := linCall(cctx, svc, in, id)
		ret := h.now()
		cancel()
		if ctx.Err() != nil && out.result == resOpen && (in.kind == linQuery || in.kind == linGet) {
			return // a read cut short by the end of the run changed nothing
		}
		// A write cut short by the end of the run is kept, open: the server may have committed
		// it before the cancellation reached it (seen: a Cancel dropped here, then a later
		// Query without the reservation was found not linearizable).
		if out.result == resOpen && (in.kind == linQuery || in.kind == linGet) {
			// A read without an answer changed nothing and says nothing: left out, it spares
			// the search. Like any client, this one backs off after a failure.
			time.Sleep(time.Duration(200+rng.IntN(200)) * time.Millisecond)
			continue
		}
		h.mu.Lock()
		if out.result == resUnexpected {
			h.codes[out.code]++
		}
		if madeID != "" {
			h.ids[in.tag] = madeID
			h.tags[in.resource] = append(h.tags[in.resource], in.tag)
		}
		p.ops = append(p.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
		h.mu.Unlock()
		pause := time.Duration(rng.IntN(5)) * time.Millisecond
		if out.result == resOpen {
			// Every open call can be linearized anywhere after its call: the fewer of them,
			// the shorter the search.
			pause = time.Duration(200+rng.IntN(200)) * time.Millisecond
		}
		time.Sleep(pause)
	}
}

// linCall makes one call and says what it was told; for a Reserve that succeeded, the new id.
func linCall(ctx context.Context, svc pb.ReservationServiceClient, in linInput, id string) (linOutput, string) {
	var err error
	var out linOutput
	var made string
	switch in.kind {
	case linReserve:
		start := gridStart.Add(time.Duration(in.from) * gridSlot)
		var resp *pb.ReserveResponse
		resp, err = svc.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{
			UserId: "lin", ResourceId: in.resource, Note: in.tag,
			Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Duration(in.to-in.from) * gridSlot)),
		}})
		made = resp.GetReservation().GetId()
	case linCancel:
		_, err = svc.Cancel(ctx, &pb.CancelRequest{Id: id})
	case linGet:
		var resp *pb.GetResponse
		if resp, err = svc.Get(ctx, &pb.GetRequest{Id: id}); err == nil {
			var h held
			if h, err = toHeld(resp.GetReservation()); err == nil {
				out.held = []held{h}
			}
		}
	case linQuery:
		out.held, err = query(ctx, svc, in.resource)
	}
	out.code = status.Code(err)
	switch out.code {
	case codes.OK:
		out.result = resOK
	case codes.FailedPrecondition:
		out.result = resConflict
	case codes.NotFound:
		out.result = resNotFound
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.OutOfRange, codes.AlreadyExists:
		out.result = resUnexpected
	default:
		// UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, a transport error, or anything else that
		// does not say whether the call took effect.
		out.result = resOpen
	}
	if in.kind != linReserve || out.result != resOK {
		made = ""
	}
	return out, made
}

func query(ctx context.Context, svc pb.ReservationServiceClient, resource string) ([]held, error) {
	stream, err := svc.Query(ctx, &pb.QueryRequest{ResourceId: resource,
		Start: timestamppb.New(gridStart), End: timestamppb.New(gridStart.Add(gridSlots * gridSlot))})
	if err != nil {
		return nil, err
	}
	var out []held
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		h, err := toHeld(r)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b held) int { return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.tag, b.tag)) })
	return out, nil
}

// toHeld turns a stored reservation into what the model holds. A window off the grid is an
// answer the model cannot hold, and is reported as such.
func toHeld(r *pb.Reservation) (held, error) {
	from := r.GetStart().AsTime().Sub(gridStart)
	to := r.GetEnd().AsTime().Sub(gridStart)
	if from%gridSlot != 0 || to%gridSlot != 0 {
		return held{}, status.Errorf(codes.OutOfRange, "reservation %s is off the grid: %s", r.GetId(), r)
	}
	return held{r.GetNote(), int(from / gridSlot), int(to / gridSlot)}, nil
}

// LinVerdict is the checker's finding for one phase.
type LinVerdict struct {
	Phase      string
	Ops, Open  int
	Result     porcupine.CheckResult
	Took       time.Duration
	Visualized string // the HTML file written when the phase was not proved linearizable
}

func (v LinVerdict) String() string {
	verdict := map[porcupine.CheckResult]string{porcupine.Ok: "linearizable", porcupine.Illegal: "NOT linearizable",
		porcupine.Unknown: "not proved (search timed out)"}[v.Result]
	s := fmt.Sprintf("%s: %d calls (%d without answer), searched in %s", verdict, v.Ops, v.Open, v.Took.Round(time.Millisecond))
	if v.Visualized != "" {
		s += "; see " + v.Visualized
	}
	return s
}

// Check checks every phase, each within timeout. When a phase is not proved linearizable, its
// visualisation is written under dir.
func (h *LinHistory) Check(dir string, timeout time.Duration) ([]LinVerdict, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.now()
	var out []LinVerdict
	for i, p := range h.phases {
		ops := slices.Clone(p.ops)
		open := 0
		for j := range ops {
			if ops[j].Output.(linOutput).result == resOpen {
				ops[j].Return = end // open to the end of the history
				open++
			}
		}
		start := time.Now()
		res, info := porcupine.CheckOperationsVerbose(resourceModel, ops, timeout)
		v := LinVerdict{Phase: p.name, Ops: len(ops), Open: open, Result: res, Took: time.Since(start)}
		if res != porcupine.Ok {
			v.Visualized = fmt.Sprintf("%s/linearizability-%d-%s.html", dir, i, slug(p.name))
			if err := porcupine.VisualizePath(resourceModel, info, v.Visualized); err != nil {
				return out, fmt.Errorf("visualize %s: %w", p.name, err)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// Unexpected returns the definite answers the model has no place for, by code.
func (h *LinHistory) Unexpected() map[codes.Code]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.codes
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
}
