package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// PollInterval is how often Follow looks for new lines, new instances and
// rotation. Polling, not inotify: it costs one stat per instance and works
// the same on every filesystem the data dir may sit on.
const PollInterval = 150 * time.Millisecond

// Query selects and shapes log lines.
type Query struct {
	Environment string
	// Owner is the Service (or Function) whose instances' logs are read.
	Owner string
	// Instance restricts the query to one instance; empty means all.
	Instance string
	// Since drops lines older than it.
	Since time.Time
	// Until drops lines newer than it; it cannot be combined with Follow.
	Until time.Time
	// Grep keeps only the lines it matches (after joining partial
	// records, before Tail).
	Grep *regexp.Regexp
	// Revision > 0 keeps only the instances of that revision of the
	// owner: those Revisions names, or else those whose sidecar
	// (INSTANCE.meta) says so. An instance known by neither is left out.
	Revision int64
	// Revisions maps instance names to their revision, for instances
	// the caller knows (the store's live instances).
	Revisions map[string]int64
	// Tail > 0 keeps only the last Tail lines (after Since) of what is
	// there now; 0 keeps all; < 0 keeps none, so Follow shows only new
	// lines (kubectl's --tail=0).
	Tail int
	// Follow keeps reading new lines until ctx ends.
	Follow bool
	// Timestamps prefixes each line with its RFC 3339 time.
	Timestamps bool
	// Prefix prefixes each line with "[INSTANCE] "; lines are prefixed
	// anyway as soon as more than one instance is read.
	Prefix bool
}

// Dir is where the logs of owner in env live under the logs root.
func Dir(root, env, owner string) string { return filepath.Join(root, env, owner) }

// Read writes the lines q selects from the log files under dir (the logs
// root, DATA/logs) to w, merged across instances in time order. With
// q.Follow it keeps writing new lines until ctx ends and then returns nil;
// after each batch it flushes w if w has a Flush() method (an
// http.ResponseWriter). Without q.Follow, an owner (or instance) with no log
// files is a NotFound error, returned before anything is written.
func Read(ctx context.Context, dir string, q Query, w io.Writer) error {
	if err := q.Validate(); err != nil {
		return err
	}
	r := &reader{
		dir:     Dir(dir, q.Environment, q.Owner),
		q:       q,
		sources: map[string]*source{},
		other:   map[string]bool{},
		out:     bufio.NewWriterSize(w, 32<<10),
		w:       w,
	}
	defer r.close()
	if err := r.discover(); err != nil {
		return err
	}
	if len(r.sources) == 0 && !q.Follow {
		if q.Instance != "" {
			return v1.NotFound("no logs for instance %q of %q in environment %q", q.Instance, q.Owner, q.Environment)
		}
		if q.Revision > 0 {
			return v1.NotFound("no logs for revision %d of %q in environment %q", q.Revision, q.Owner, q.Environment)
		}
		return v1.NotFound("no logs for %q in environment %q", q.Owner, q.Environment)
	}
	r.prefix = q.Prefix || len(r.sources) > 1
	if err := r.initial(ctx); err != nil {
		return err
	}
	if !q.Follow {
		return nil
	}
	return r.follow(ctx)
}

// Validate checks that q names files inside the logs root: Read does, and a
// caller that must answer before streaming can ask first.
func (q Query) Validate() error {
	for field, name := range map[string]string{"environment": q.Environment, "owner": q.Owner} {
		if !safeName(name) {
			return v1.FieldError(field, "%q is not a valid name", name)
		}
	}
	if q.Instance != "" && !safeName(q.Instance) {
		return v1.FieldError("instance", "%q is not a valid name", q.Instance)
	}
	if !q.Until.IsZero() && q.Follow {
		return v1.FieldError("until", "cannot be combined with follow: a followed log has no end")
	}
	if !q.Until.IsZero() && !q.Since.IsZero() && q.Until.Before(q.Since) {
		return v1.FieldError("until", "%s is before since (%s)", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	if q.Revision < 0 {
		return v1.FieldError("revision", "%d is not a revision number", q.Revision)
	}
	return nil
}

type reader struct {
	dir     string
	q       Query
	sources map[string]*source
	// other holds instances seen and known to be of another revision.
	other  map[string]bool
	prefix bool
	out    *bufio.Writer
	w      io.Writer
}

func (r *reader) close() {
	for _, s := range r.sources {
		s.close()
	}
}

// sorted returns the sources in instance order, so that lines with equal
// times come out the same way every time.
func (r *reader) sorted() []*source {
	out := make([]*source, 0, len(r.sources))
	for _, s := range r.sources {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *source) int { return strings.Compare(a.instance, b.instance) })
	return out
}

// discover adds a source for every instance with files it does not know
// yet. A missing owner directory is not an error: when following, the first
// instance may not have started.
func (r *reader) discover() error {
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read log directory: %w", err)
	}
	rotated := map[string][]int{}
	found := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		inst, n, ok := parseFileName(e.Name())
		if !ok || (r.q.Instance != "" && inst != r.q.Instance) || !r.ofRevision(inst) {
			continue
		}
		found[inst] = true
		if n > 0 {
			rotated[inst] = append(rotated[inst], n)
		}
	}
	for inst := range found {
		if _, ok := r.sources[inst]; ok {
			continue
		}
		s := &source{instance: inst, live: filepath.Join(r.dir, inst+".log")}
		// The highest number is the oldest file.
		ns := rotated[inst]
		sort.Sort(sort.Reverse(sort.IntSlice(ns)))
		for _, n := range ns {
			s.queue = append(s.queue, s.live+"."+strconv.Itoa(n))
		}
		r.sources[inst] = s
	}
	return nil
}

// ofRevision reports whether inst is of the revision asked for. An
// instance whose revision is not known yet is asked again at the next
// discovery: its sidecar may be written after its first line.
func (r *reader) ofRevision(inst string) bool {
	if r.q.Revision <= 0 {
		return true
	}
	if r.other[inst] {
		return false
	}
	rev, ok := r.q.Revisions[inst]
	if !ok {
		m, err := ReadMeta(r.dir, inst)
		if err != nil {
			return false
		}
		rev = m.Revision
	}
	if rev != r.q.Revision {
		r.other[inst] = true
		return false
	}
	return true
}

// parseFileName splits "INSTANCE.log" and "INSTANCE.log.N".
func parseFileName(name string) (instance string, rotation int, ok bool) {
	if inst, found := strings.CutSuffix(name, ".log"); found {
		return inst, 0, inst != ""
	}
	i := strings.LastIndex(name, ".log.")
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(name[i+len(".log."):])
	if err != nil || n < 1 {
		return "", 0, false
	}
	return name[:i], n, true
}

// initial writes what is in the files now: a k-way merge by time that reads
// each file once, so memory stays bounded by Tail, not by the log size.
func (r *reader) initial(ctx context.Context) error {
	final := !r.q.Follow
	srcs := r.sorted()
	var ring []line
	var next, count int
	for {
		var best *source
		var bestLine line
		for _, s := range srcs {
			l, ok, err := s.peek(final)
			if err != nil {
				return err
			}
			if ok && (best == nil || l.time.Before(bestLine.time)) {
				best, bestLine = s, l
			}
		}
		if best == nil {
			break
		}
		if !r.q.Until.IsZero() && bestLine.time.After(r.q.Until) {
			// Lines come out in time order: the rest are later still.
			break
		}
		best.ready = best.ready[1:]
		if count++; count%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if !r.wanted(bestLine) {
			continue
		}
		switch {
		case r.q.Tail < 0:
		case r.q.Tail == 0:
			if err := r.write(bestLine); err != nil {
				return err
			}
		case len(ring) < r.q.Tail:
			ring = append(ring, bestLine)
		default:
			ring[next] = bestLine
			next = (next + 1) % r.q.Tail
		}
	}
	for i := range ring {
		if err := r.write(ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	return r.flush()
}

// follow polls for new instances, new lines and rotation until ctx ends.
func (r *reader) follow(ctx context.Context) error {
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := r.discover(); err != nil {
			return err
		}
		if len(r.sources) > 1 {
			r.prefix = true
		}
		var batch []line
		for _, s := range r.sorted() {
			lines, err := s.poll()
			if err != nil {
				return err
			}
			batch = append(batch, lines...)
		}
		if len(batch) == 0 {
			continue
		}
		sortLines(batch)
		for _, l := range batch {
			if r.wanted(l) {
				if err := r.write(l); err != nil {
					return err
				}
			}
		}
		if err := r.flush(); err != nil {
			return err
		}
	}
}

func (r *reader) wanted(l line) bool {
	if !r.q.Since.IsZero() && l.time.Before(r.q.Since) {
		return false
	}
	if !r.q.Until.IsZero() && l.time.After(r.q.Until) {
		return false
	}
	return r.q.Grep == nil || r.q.Grep.MatchString(l.text)
}

func (r *reader) write(l line) error {
	if r.prefix {
		r.out.WriteByte('[')
		r.out.WriteString(l.instance)
		r.out.WriteString("] ")
	}
	if r.q.Timestamps {
		r.out.WriteString(l.time.UTC().Format(time.RFC3339Nano))
		r.out.WriteByte(' ')
	}
	r.out.WriteString(l.text)
	_, err := r.out.WriteString("\n")
	return err
}

func (r *reader) flush() error {
	if err := r.out.Flush(); err != nil {
		return err
	}
	if f, ok := r.w.(interface{ Flush() }); ok {
		f.Flush()
	}
	return nil
}

// sortLines orders lines by time, keeping the order of equal times, which
// is file order within an instance.
func sortLines(ls []line) {
	slices.SortStableFunc(ls, func(a, b line) int { return a.time.Compare(b.time) })
}

// safeName keeps query names inside the logs root.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}
