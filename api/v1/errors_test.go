package v1

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestHTTPStatusIsTheDocumentedTable: every kind in docs/api.md's error
// table answers its documented status, and every kind HTTPStatus knows is
// documented there.
func TestHTTPStatusIsTheDocumentedTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]int{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| kind | status |") {
			in = true
			continue
		}
		if in && !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !in || len(cells) < 2 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		code, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			t.Fatalf("docs/api.md error table: %q has no status", line)
		}
		documented[strings.TrimSpace(cells[0])] = code
	}
	if len(documented) == 0 {
		t.Fatal("no error table in docs/api.md")
	}
	for kind, want := range documented {
		if got, ok := HTTPStatus(kind); !ok || got != want {
			t.Errorf("HTTPStatus(%s) = %d, %v; docs/api.md says %d", kind, got, ok, want)
		}
	}
	for kind := range statusByKind {
		if _, ok := documented[kind]; !ok {
			t.Errorf("kind %s has a status but is not in docs/api.md's table", kind)
		}
	}
	if got, _ := HTTPStatus(ErrTooManyRequests); got != http.StatusTooManyRequests {
		t.Errorf("TooManyRequests answers %d, want 429", got)
	}
	if got, ok := HTTPStatus("Bogus"); ok || got != http.StatusInternalServerError {
		t.Errorf("an unknown kind answers %d, %v; want 500, false", got, ok)
	}
}
