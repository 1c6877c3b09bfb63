package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEExamples replays the README's rsvctl session as written, against a fresh server:
// each "$ rsvctl" line is run and what it prints is compared with the lines under it. Three
// things are mapped, as a reader's machine would differ too: the documented addresses
// (127.0.0.1:50051, reservationd's gRPC port; 127.0.0.1:8080, its HTTP port) to this test's
// servers, the README's reservation ids to the ones the server made (paired in order of
// appearance), and the times a change was made (when a reservation was cancelled), which
// are the time the test ran.
func TestREADMEExamples(t *testing.T) {
	clean(t, "")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "**rsvctl**, the command-line client")
	if !ok {
		t.Fatal("README: no rsvctl section")
	}
	_, block, _ := strings.Cut(section, "```console\n")
	block, _, _ = strings.Cut(block, "```")

	web := httptest.NewServer(http.HandlerFunc(http.NotFound))
	defer web.Close()
	grpcAddr, httpAddr := serve(t), strings.TrimPrefix(web.URL, "http://")
	addrs := strings.NewReplacer("127.0.0.1:50051", grpcAddr, "127.0.0.1:8080", httpAddr)
	back := strings.NewReplacer(grpcAddr, "127.0.0.1:50051", httpAddr, "127.0.0.1:8080")
	ids := map[string]string{} // README id: the server's
	lines := strings.Split(block, "\n")
	for i := 0; i < len(lines); i++ {
		line, ok := strings.CutPrefix(lines[i], "$ ")
		if !ok {
			continue
		}
		var want []string
		for i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "$ ") && lines[i+1] != "" {
			i++
			want = append(want, lines[i])
		}
		words := shellWords(t, line)
		switch words[0] {
		case "export":
			for _, kv := range words[1:] {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, addrs.Replace(v))
			}
			continue
		case "rsvctl":
		default:
			t.Fatalf("README: %q is not an rsvctl line", line)
		}
		args := words[1:]
		for j, a := range args {
			if id, ok := ids[a]; ok {
				args[j] = id
			}
			args[j] = addrs.Replace(args[j])
		}
		var out, errOut bytes.Buffer
		run(context.Background(), args, &out, &errOut)
		got := strings.Split(strings.TrimSuffix(back.Replace(out.String()+errOut.String()), "\n"), "\n")
		ok = len(got) == len(want)
		for j := 0; ok && j < len(got); j++ {
			ok = sameLine(want[j], got[j], ids)
		}
		if !ok {
			t.Errorf("README: $ %s\n--- printed\n%s\n--- README\n%s", line, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// sameLine compares a README line with a printed one, trailing blanks aside; an id in the
// README stands for the one printed at its place, the same one each time it appears.
func sameLine(want, got string, ids map[string]string) bool {
	wantIDs, gotIDs := uuidRE.FindAllString(want, -1), uuidRE.FindAllString(got, -1)
	if len(wantIDs) != len(gotIDs) {
		return false
	}
	for k, w := range wantIDs {
		if id, ok := ids[w]; ok && id != gotIDs[k] {
			return false
		}
		ids[w] = gotIDs[k]
		want = strings.Replace(want, w, gotIDs[k], 1)
	}
	// A time printed that is within a day of now is when a change was made: the README's
	// time at its place stands for it.
	wantTimes, gotTimes := shownTime.FindAllString(want, -1), shownTime.FindAllString(got, -1)
	if len(wantTimes) != len(gotTimes) {
		return false
	}
	for k, g := range gotTimes {
		at, err := time.Parse("2006-01-02 15:04", g[:16])
		if err == nil && at.Sub(time.Now()).Abs() < 24*time.Hour {
			want = strings.Replace(want, wantTimes[k], g, 1)
		}
	}
	return strings.TrimRight(want, " ") == strings.TrimRight(got, " ")
}

// shownTime is a time as rsvctl shows it: 2030-05-01 14:00 CEST, or with seconds.
var shownTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)? [A-Z][A-Za-z0-9+-]*`)

// shellWords splits a console line as a shell would for these examples: blanks separate,
// double quotes group, and # starts a comment.
func shellWords(t *testing.T, line string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case quoted:
			w.WriteRune(r)
		case r == '#' && !inWord:
			return append(words, flush(&w, &inWord)...)
		case r == ' ' || r == '\t':
			words = append(words, flush(&w, &inWord)...)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("README: unbalanced quotes in %q", line)
	}
	return append(words, flush(&w, &inWord)...)
}

func flush(w *strings.Builder, inWord *bool) []string {
	if !*inWord {
		return nil
	}
	s := w.String()
	w.Reset()
	*inWord = false
	return []string{s}
}
