package reservation

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A label selector picks resources of the catalogue by their labels, in Kubernetes'
// label-selector grammar with its numeric comparisons: terms separated by commas, each one of
//
//	k=v  k==v   the label k is v
//	k!=v        the label k is not v (or the resource has no label k)
//	k in (a,b)  the label k is one of the values
//	k notin (a,b) the label k is none of them (or absent)
//	k           the resource has the label k
//	!k          it has no label k
//	k>n k>=n k<n k<=n  the label k is an integer and compares so with the integer n
//
// A resource matches when every term does. Keys and values are runs of any characters but
// blanks and , = ! ( ) < >; blanks between tokens are ignored. The selector is bounded
// (MaxSelectorLen, MaxSelectorTerms, MaxSelectorValues), and an error names the position.

// Limits of a selector.
const (
	MaxSelectorLen    = 1024 // bytes
	MaxSelectorTerms  = 32
	MaxSelectorValues = 32 // in one in/notin list
)

// selectorOp is what a term asks of a label.
type selectorOp int

const (
	opEq selectorOp = iota
	opNe
	opIn
	opNotIn
	opExists
	opNotExists
	opGt
	opGe
	opLt
	opLe
)

// term is one requirement of a selector.
type term struct {
	key    string
	op     selectorOp
	values []string
	n      int64 // the integer of a comparison
}

// Selector is a parsed label selector; the zero value matches every resource.
type Selector struct{ terms []term }

// SelectorError is a selector that does not parse: what is wrong at which byte (from 1).
type SelectorError struct {
	Pos int
	Msg string
}

func (e *SelectorError) Error() string { return fmt.Sprintf("at byte %d: %s", e.Pos, e.Msg) }

// Matches reports whether labels satisfy every term of s.
func (s Selector) Matches(labels map[string]string) bool {
	for _, t := range s.terms {
		v, ok := labels[t.key]
		switch t.op {
		case opEq:
			ok = ok && v == t.values[0]
		case opNe:
			ok = !ok || v != t.values[0]
		case opIn:
			ok = ok && contains(t.values, v)
		case opNotIn:
			ok = !ok || !contains(t.values, v)
		case opExists:
		case opNotExists:
			ok = !ok
		default:
			n, err := strconv.ParseInt(v, 10, 64)
			ok = ok && err == nil && compare(t.op, n, t.n)
		}
		if !ok {
			return false
		}
	}
	return true
}

func contains(vs []string, v string) bool {
	for _, w := range vs {
		if w == v {
			return true
		}
	}
	return false
}

func compare(op selectorOp, a, b int64) bool {
	switch op {
	case opGt:
		return a > b
	case opGe:
		return a >= b
	case opLt:
		return a < b
	}
	return a <= b
}

// token is a lexeme of a selector: an operator or a word, at byte pos (from 0).
type token struct {
	text string
	word bool
	pos  int
}

// lexSelector splits s into tokens.
func lexSelector(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!=") || strings.HasPrefix(s[i:], ">=") || strings.HasPrefix(s[i:], "<="):
			out = append(out, token{text: s[i : i+2], pos: i})
			i += 2
		case strings.IndexByte(",=!()<>", c) >= 0:
			out = append(out, token{text: s[i : i+1], pos: i})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t,=!()<>", s[j]) < 0 {
				j++
			}
			w := s[i:j]
			if !utf8.ValidString(w) {
				return nil, &SelectorError{i + 1, "is not valid UTF-8"}
			}
			if len(w) > MaxLabelLen {
				return nil, &SelectorError{i + 1, fmt.Sprintf("a key or value is at most %d bytes, got %d", MaxLabelLen, len(w))}
			}
			out = append(out, token{text: w, word: true, pos: i})
			i = j
		}
	}
	return out, nil
}

// ParseSelector parses a label selector (the grammar above). An empty one is an error: it
// would select the whole catalogue, which a caller asks for with a term that says so, such
// as "!no-such-label".
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorLen {
		return Selector{}, &SelectorError{MaxSelectorLen + 1, fmt.Sprintf("a selector is at most %d bytes, got %d", MaxSelectorLen, len(s))}
	}
	toks, err := lexSelector(s)
	if err != nil {
		return Selector{}, err
	}
	if len(toks) == 0 {
		return Selector{}, &SelectorError{1, "is empty: give at least one term, such as view=sea"}
	}
	p := selectorParser{toks: toks, end: len(s)}
	var sel Selector
	for {
		if len(sel.terms) == MaxSelectorTerms {
			return Selector{}, p.fail(fmt.Sprintf("at most %d terms", MaxSelectorTerms))
		}
		t, err := p.term()
		if err != nil {
			return Selector{}, err
		}
		sel.terms = append(sel.terms, t)
		if p.done() {
			return sel, nil
		}
		if !p.take(",") {
			return Selector{}, p.fail(fmt.Sprintf("expected a comma before %q", p.peek().text))
		}
	}
}

// selectorParser reads a selector's tokens.
type selectorParser struct {
	toks []token
	i    int
	end  int // the selector's length: the position of its end
}

func (p *selectorParser) done() bool { return p.i >= len(p.toks) }

func (p *selectorParser) peek() token {
	if p.done() {
		return token{pos: p.end}
	}
	return p.toks[p.i]
}

// take consumes the next token when it is the operator op.
func (p *selectorParser) take(op string) bool {
	if t := p.peek(); !p.done() && !t.word && t.text == op {
		p.i++
		return true
	}
	return false
}

// fail is an error at the next token (or the end).
func (p *selectorParser) fail(msg string) error {
	at := "at the end"
	if !p.done() {
		at = fmt.Sprintf("at %q", clipText(p.peek().text))
	}
	return &SelectorError{p.peek().pos + 1, msg + " (" + at + ")"}
}

// word consumes a word: a key, a value or an integer.
func (p *selectorParser) word(what string) (string, error) {
	if t := p.peek(); !p.done() && t.word {
		p.i++
		return t.text, nil
	}
	return "", p.fail("expected " + what)
}

// term parses one requirement.
func (p *selectorParser) term() (term, error) {
	if p.take("!") {
		k, err := p.word("a label key after !")
		return term{key: k, op: opNotExists}, err
	}
	k, err := p.word("a label key")
	if err != nil {
		return term{}, err
	}
	t := term{key: k}
	next := p.peek()
	switch {
	case p.done() || (!next.word && next.text == ","):
		t.op = opExists
		return t, nil
	case next.word && (next.text == "in" || next.text == "notin"):
		p.i++
		t.op = opIn
		if next.text == "notin" {
			t.op = opNotIn
		}
		t.values, err = p.set()
		return t, err
	case next.word:
		return t, p.fail("expected an operator (=, ==, !=, in, notin, <, <=, >, >=) after key " + strconv.Quote(clipText(k)))
	}
	p.i++
	switch next.text {
	case "=", "==", "!=":
		t.op = opEq
		if next.text == "!=" {
			t.op = opNe
		}
		v := ""
		if n := p.peek(); !p.done() && n.word {
			v = n.text
			p.i++
		} else if !p.done() && n.text != "," {
			return t, p.fail("expected a value")
		}
		t.values = []string{v}
		return t, nil
	case ">", ">=", "<", "<=":
		t.op = map[string]selectorOp{">": opGt, ">=": opGe, "<": opLt, "<=": opLe}[next.text]
		at := p.peek()
		v, err := p.word("an integer")
		if err != nil {
			return t, err
		}
		if t.n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return t, &SelectorError{at.pos + 1, fmt.Sprintf("expected an integer after %s, got %q", next.text, clipText(v))}
		}
		return t, nil
	}
	p.i-- // name the operator
	return t, p.fail("expected an operator (=, ==, !=, in, notin, <, <=, >, >=) after key " + strconv.Quote(clipText(k)))
}

// set parses "(a, b, ...)".
func (p *selectorParser) set() ([]string, error) {
	if !p.take("(") {
		return nil, p.fail("expected ( after in or notin")
	}
	var vs []string
	for {
		if len(vs) == MaxSelectorValues {
			return nil, p.fail(fmt.Sprintf("at most %d values in a set", MaxSelectorValues))
		}
		v, err := p.word("a value")
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
		if p.take(")") {
			return vs, nil
		}
		if !p.take(",") {
			return nil, p.fail("expected , or ) in a set")
		}
	}
}
