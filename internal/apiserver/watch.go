package apiserver

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// WatchBookmarkEvery is how often a quiet watch sends a BOOKMARK: a
// heartbeat that keeps proxies from closing the stream, and the moment a
// revoked or narrowed token is noticed and its stream ended.
var WatchBookmarkEvery = 30 * time.Second

// watchKinds are the store kinds the watch names, and the kind each is
// named by. Tokens, secrets, configs and stacks stay out: a watcher
// learns of objects it can read with a viewer's GET, nothing else.
var watchKinds = map[string]string{
	v1.KindEnvironment: v1.KindEnvironment,
	v1.KindService:     v1.KindService,
	v1.KindFunction:    v1.KindFunction,
	v1.KindTopic:       v1.KindTopic,
	v1.KindWorkflow:    v1.KindWorkflow,
	v1.KindRevision:    v1.KindRevision,
	v1.KindInstance:    v1.KindInstance,
	v1.KindEvent:       v1.KindEvent,
	// The workflow engine's record of an execution (engine.KindExecution).
	"WorkflowExecution": v1.KindExecution,
}

// executionJournalPrefix begins the kind under which the workflow engine
// appends an execution's history, one kind per execution id
// (engine.journalKind): an append is a change of that execution. The
// engine's layout is read here, not imported, so the API does not depend
// on the engine; TestWatchNamesExecutionChanges fails if it moves.
const executionJournalPrefix = "WorkflowJournal/"

// watchEvent names a store change as the watch shows it; false for kinds
// the watch does not show.
func watchEvent(ev store.Event) (v1.WatchEvent, bool) {
	k := ev.Record.Key
	we := v1.WatchEvent{Type: string(ev.Type), Environment: k.Environment, Name: k.Name, ResourceVersion: ev.Record.Revision}
	switch kind, ok := watchKinds[k.Kind]; {
	case ok:
		we.Kind = kind
	case strings.HasPrefix(k.Kind, executionJournalPrefix):
		// A history entry appended: the execution changed.
		we.Type, we.Kind, we.Name = v1.WatchPut, v1.KindExecution, strings.TrimPrefix(k.Kind, executionJournalPrefix)
	default:
		return we, false
	}
	if we.Kind == v1.KindEnvironment {
		we.Environment = k.Name
	}
	return we, true
}

// watch streams changes as newline-delimited JSON (docs/api.md, Watch):
// a BOOKMARK with the store's revision first, then one v1.WatchEvent per
// change of an object of the caller's environments, a BOOKMARK every
// WatchBookmarkEvery. It ends when the client goes, when the store drops
// a watcher that fell behind (the client watches again from its last
// revision), or when the token no longer admits it.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := s.principal(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	env := q.Get("environment")
	if env != "" && !p.In(env) {
		return v1.Errorf(v1.ErrForbidden, "token %q (role %s, environments %s): environment %q is not one of its environments",
			p.Name, p.Role, strings.Join(p.Environments, ","), env)
	}
	var kinds []string
	for _, list := range q["kind"] {
		for k := range strings.SplitSeq(list, ",") {
			if k == "" {
				continue
			}
			if !slices.Contains(watchKindNames(), k) {
				return v1.FieldError("kind", "%q is not a kind the watch shows; it shows %s", k, strings.Join(watchKindNames(), ", "))
			}
			kinds = append(kinds, k)
		}
	}
	var after uint64
	if rv := q.Get("resourceVersion"); rv != "" {
		if after, err = strconv.ParseUint(rv, 10, 64); err != nil {
			return v1.FieldError("resourceVersion", "%q is not a revision number", rv)
		}
	} else if after, err = s.store.Revision(ctx); err != nil {
		return err
	}
	ch, err := s.store.Watch(ctx, "", after)
	if err != nil {
		if v1.IsConflict(err) {
			return v1.Conflict("resourceVersion %d is older than the changes the server keeps: read again, and watch from now", after)
		}
		return err
	}

	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	// A watch lasts as long as its client: the server's write timeout is
	// for ordinary answers.
	_ = rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(ev v1.WatchEvent) bool {
		if enc.Encode(ev) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	last := after
	if !send(v1.WatchEvent{Type: v1.WatchBookmark, ResourceVersion: last}) {
		return nil
	}
	tick := time.NewTicker(WatchBookmarkEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			last = ev.Record.Revision
			we, ok := watchEvent(ev)
			if !ok || !p.In(we.Environment) || (env != "" && we.Environment != env) ||
				(len(kinds) > 0 && !slices.Contains(kinds, we.Kind)) {
				continue
			}
			if !send(we) {
				return nil
			}
		case <-tick.C:
			if !s.stillAdmits(r, p) {
				return nil
			}
			if !send(v1.WatchEvent{Type: v1.WatchBookmark, ResourceVersion: last}) {
				return nil
			}
		}
	}
}

// stillAdmits says whether r's token is still p, with the same role and
// environments: a watch outlives the check made when it opened.
func (s *Server) stillAdmits(r *http.Request, p Principal) bool {
	sc, ok := s.auth.(Scoper)
	if !ok {
		return s.auth.Authorize(r) == nil
	}
	now, err := sc.Principal(r)
	return err == nil && now.Name == p.Name && now.Role == p.Role && slices.Equal(now.Environments, p.Environments)
}

func watchKindNames() []string {
	names := make([]string, 0, len(watchKinds))
	for _, k := range watchKinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// whoami answers who the request's token is: what a client shows its user
// (the dashboard's header) before the user tries something.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	p, err := s.principal(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v1.WhoAmI{Name: p.Name, Role: p.Role, Environments: p.Environments})
	return nil
}
