package kv_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/kv"
	"berth.dev/berth/internal/testutil"
)

// jetStream starts an embedded server on dir as package queue does
// (sync_always, in-process) and returns its JetStream and a stop.
func jetStream(t *testing.T, dir string) (jetstream.JetStream, func()) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{DontListen: true, NoSigs: true, JetStream: true, StoreDir: dir, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			nc.Close()
			srv.Shutdown()
			srv.WaitForShutdown()
		}
	}
	t.Cleanup(stop)
	return js, stop
}

func rev(n uint64) *uint64 { return &n }

func TestPutGetCAS(t *testing.T) {
	js, _ := jetStream(t, t.TempDir())
	s := kv.New(kv.Config{JetStream: js})
	ctx := context.Background()
	if _, err := s.Get(ctx, "dev", "counter"); !v1.IsNotFound(err) {
		t.Fatalf("get before any write: %v", err)
	}
	r1, err := s.Put(ctx, "dev", "counter", []byte("1"), kv.PutOptions{Revision: rev(0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "dev", "counter", []byte("x"), kv.PutOptions{Revision: rev(0)}); !v1.IsConflict(err) {
		t.Fatalf("create-only on an existing key: %v", err)
	}
	r2, err := s.Put(ctx, "dev", "counter", []byte("2"), kv.PutOptions{Revision: &r1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "dev", "counter", []byte("stale"), kv.PutOptions{Revision: &r1}); !v1.IsConflict(err) {
		t.Fatalf("CAS on a stale revision: %v", err)
	}
	e, err := s.Get(ctx, "dev", "counter")
	if err != nil || string(e.Value) != "2" || e.Revision != r2 {
		t.Fatalf("get = %+v, %v", e, err)
	}
	// Another environment's key of the same name is another key.
	if _, err := s.Get(ctx, "prod", "counter"); !v1.IsNotFound(err) {
		t.Fatalf("prod sees dev's key: %v", err)
	}
	// Deleted, then created again with "must not exist".
	if err := s.Delete(ctx, "dev", "counter", &r2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "dev", "counter"); !v1.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := s.Put(ctx, "dev", "counter", []byte("again"), kv.PutOptions{Revision: rev(0)}); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	if err := kv.ValidKey(strings.Repeat("k", 1025)); err == nil {
		t.Fatal("a 1025-byte key is valid")
	}
	if _, err := s.Put(ctx, "dev", "big", make([]byte, kv.DefaultMaxValueBytes+1), kv.PutOptions{}); v1.KindOf(err) != v1.ErrTooLarge {
		t.Fatalf("value over the limit: %v", err)
	}
}

// Keys of any bytes list in order under a prefix, and survive a restart of
// the server (acknowledged writes are on disk).
func TestListAndRestart(t *testing.T) {
	dir := t.TempDir()
	js, stop := jetStream(t, dir)
	s := kv.New(kv.Config{JetStream: js})
	ctx := context.Background()
	for _, k := range []string{"user:1", "user:2", "user/é ü", "user.3", "other", "user=4"} {
		if _, err := s.Put(ctx, "dev", k, []byte("v-"+k), kv.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Delete(ctx, "dev", "user:2", nil)
	stop()
	js, _ = jetStream(t, dir)
	s = kv.New(kv.Config{JetStream: js})
	items, more, err := s.List(ctx, "dev", "user", "", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range items {
		keys = append(keys, e.Key)
		if string(e.Value) != "v-"+e.Key {
			t.Errorf("%s = %q", e.Key, e.Value)
		}
	}
	if strings.Join(keys, "|") != "user.3|user/é ü|user:1|user=4" || more {
		t.Fatalf("list = %q more=%v", strings.Join(keys, "|"), more)
	}
	page, more, _ := s.List(ctx, "dev", "user", "user.3", 2, false)
	if len(page) != 2 || page[0].Key != "user/é ü" || !more {
		t.Fatalf("page after user.3 = %+v more=%v", page, more)
	}
}

func TestTTL(t *testing.T) {
	js, _ := jetStream(t, t.TempDir())
	s := kv.New(kv.Config{JetStream: js})
	ctx := context.Background()
	if _, err := s.Put(ctx, "dev", "session", []byte("s"), kv.PutOptions{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(ctx, "dev", "session")
	if err != nil || e.Expires == nil {
		t.Fatalf("get of a key with a TTL: %+v %v", e, err)
	}
	testutil.WaitFor(t, 10*time.Second, "the key to expire", func() bool {
		_, err := s.Get(ctx, "dev", "session")
		return v1.IsNotFound(err)
	})
}

type allowAll struct{}

func (allowAll) CanAccess(string, bool) error { return nil }

// Over HTTP: put with CAS, get, list, and a watch that sees the changes.
func TestHTTP(t *testing.T) {
	js, _ := jetStream(t, t.TempDir())
	s := kv.New(kv.Config{JetStream: js})
	h := kv.NewHandler(s, func(r *http.Request) (kv.Identity, error) {
		if u, p, ok := r.BasicAuth(); ok && u == "AKID" && p == "secret" {
			return allowAll{}, nil
		}
		return nil, v1.Errorf(v1.ErrUnauthorized, "no")
	}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServePlatform(w, r, "dev", "") }))
	defer srv.Close()
	do := func(method, path, body string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth("AKID", "secret")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res, _ := http.Get(srv.URL + "/k")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %s", res.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/?prefix=visits/&watch=true", nil)
	wreq.SetBasicAuth("AKID", "secret")
	wres, err := http.DefaultClient.Do(wreq)
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewScanner(wres.Body)
	next := func() string {
		for events.Scan() {
			if strings.TrimSpace(events.Text()) == "" {
				continue
			}
			var e kv.Entry
			if err := json.Unmarshal(events.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			return e.Op + ":" + e.Key + "=" + string(e.Value)
		}
		t.Fatalf("the watch ended: %v (context: %v)", events.Err(), ctx.Err())
		return ""
	}
	// Each change is waited for before the next: a watcher is shown every
	// change it had time to see. (The bucket keeps one value a key, so a
	// value overwritten before the watch delivered it can be skipped; the
	// last change of a key always arrives: see the burst below.)
	if res := do(http.MethodPut, "/visits/home", "1", "If-None-Match", "*"); res.StatusCode != 200 {
		t.Fatalf("create: %s", res.Status)
	}
	if got := next(); got != "put:visits/home=1" {
		t.Fatalf("watch saw %q after the create", got)
	}
	res = do(http.MethodGet, "/visits/home", "")
	b, _ := io.ReadAll(res.Body)
	if string(b) != "1" || res.Header.Get("X-Berth-Revision") == "" {
		t.Fatalf("get: %q %v", b, res.Header)
	}
	if res := do(http.MethodPut, "/visits/home", "2", "If-Match", "999999"); res.StatusCode != http.StatusConflict {
		t.Fatalf("stale CAS: %s", res.Status)
	}
	if res := do(http.MethodPut, "/visits/home", "2", "If-Match", res.Header.Get("X-Berth-Revision")); res.StatusCode != 200 {
		t.Fatalf("CAS: %s", res.Status)
	}
	if got := next(); got != "put:visits/home=2" {
		t.Fatalf("watch saw %q after the CAS", got)
	}
	do(http.MethodDelete, "/visits/home", "")
	if got := next(); got != "delete:visits/home=" {
		t.Fatalf("watch saw %q after the delete", got)
	}
	// A burst of writes to one key: whatever is skipped, the watch ends on
	// the last value, and what it shows comes in the order written.
	for i := 1; i <= 20; i++ {
		if res := do(http.MethodPut, "/visits/burst", strconv.Itoa(i)); res.StatusCode != 200 {
			t.Fatalf("burst put %d: %s", i, res.Status)
		}
	}
	for last := 0; last < 20; {
		got := next()
		v, err := strconv.Atoi(strings.TrimPrefix(got, "put:visits/burst="))
		if err != nil || v <= last {
			t.Fatalf("after value %d the watch saw %q", last, got)
		}
		last = v
	}
	do(http.MethodDelete, "/visits/burst", "")
	if got := next(); got != "delete:visits/burst=" {
		t.Fatalf("watch saw %q after the burst's delete", got)
	}
	res = do(http.MethodGet, "/?prefix=visits/", "")
	var list struct{ Items []kv.Entry }
	json.NewDecoder(res.Body).Decode(&list)
	if len(list.Items) != 0 {
		t.Fatalf("list after delete = %+v", list.Items)
	}
	if ctx.Err() != nil {
		t.Fatal("the watch timed out")
	}
}
