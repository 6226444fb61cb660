package kubernetes

import (
	"bufio"
	"context"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/telemetry/logs"
)

// Logs reads the workload's pods' logs through the API server's pod log
// endpoint, with the same filters and output as on one machine. A
// cluster keeps the logs of live pods only (and of each container's
// previous run): the logs of pods gone are the cluster's log pipeline's.
func (b *Backend) Logs(ctx context.Context, q logs.Query, w io.Writer) error {
	if err := q.Validate(); err != nil {
		return err
	}
	pods := b.logPods(q)
	if len(pods) == 0 && !q.Follow {
		switch {
		case q.Instance != "":
			return v1.NotFound("no logs for instance %q of %q in environment %q", q.Instance, q.Owner, q.Environment)
		case q.Revision > 0:
			return v1.NotFound("no logs for revision %d of %q in environment %q", q.Revision, q.Owner, q.Environment)
		}
		return v1.NotFound("no logs for %q in environment %q", q.Owner, q.Environment)
	}
	prefix := q.Prefix || len(pods) > 1
	out := &lineWriter{w: w, q: q, prefix: prefix}
	if !q.Follow {
		var lines []logLine
		for _, p := range pods {
			l, err := b.readPod(ctx, p, q, false, nil)
			if err != nil {
				return err
			}
			lines = append(lines, l...)
		}
		sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
		if q.Tail > 0 && len(lines) > q.Tail {
			lines = lines[len(lines)-q.Tail:]
		}
		if q.Tail < 0 {
			lines = nil
		}
		for _, l := range lines {
			if err := out.write(l); err != nil {
				return err
			}
		}
		return nil
	}
	// Follow every pod there is and every pod that comes, until ctx ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	following := map[string]bool{}
	start := func(p *corev1.Pod) {
		following[p.Name] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = b.readPod(ctx, p, q, true, out.write)
		}()
	}
	for _, p := range pods {
		start(p)
	}
	changed := make(chan struct{}, 1)
	defer b.subscribe(func(ref backend.Ref) {
		if ref.Environment == q.Environment && ref.Name == q.Owner {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-changed:
			for _, p := range b.logPods(q) {
				if !following[p.Name] && p.Status.Phase != corev1.PodPending {
					out.setPrefix()
					start(p)
				}
			}
		}
	}
}

// logPods are the live pods q reads.
func (b *Backend) logPods(q logs.Query) []*corev1.Pod {
	ns := b.Namespace(q.Environment)
	var out []*corev1.Pod
	for _, kind := range []string{v1.KindService, v1.KindFunction} {
		objs, _ := b.pods.GetIndexer().ByIndex(workloadIndex, indexKey(ns, kind, q.Owner))
		for _, o := range objs {
			p, ok := o.(*corev1.Pod)
			if !ok || p.Status.Phase == corev1.PodPending && !q.Follow {
				continue
			}
			if q.Instance != "" && p.Name != q.Instance {
				continue
			}
			if q.Revision > 0 && p.Labels[LabelRevision] != strconv.FormatInt(q.Revision, 10) {
				continue
			}
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

type logLine struct {
	pod  string
	at   time.Time
	text string
}

// readPod reads one pod's log (timestamps on, as the kubelet keeps them)
// and hands each wanted line to emit, or returns them when emit is nil.
func (b *Backend) readPod(ctx context.Context, p *corev1.Pod, q logs.Query, follow bool, emit func(logLine) error) ([]logLine, error) {
	opts := &corev1.PodLogOptions{Container: containerName, Timestamps: true, Follow: follow}
	if !q.Since.IsZero() {
		opts.SinceTime = &metav1.Time{Time: q.Since}
	}
	if follow && q.Tail != 0 {
		n := int64(max(q.Tail, 0))
		opts.TailLines = &n
	}
	rc, err := b.client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, opts).Stream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, b.wrap(err, "get", "logs of pod "+p.Name, p.Namespace)
	}
	defer rc.Close()
	var lines []logLine
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ts, text, _ := strings.Cut(sc.Text(), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			at, text = time.Now(), sc.Text()
		}
		l := logLine{pod: p.Name, at: at, text: text}
		if !q.Since.IsZero() && at.Before(q.Since) || !q.Until.IsZero() && at.After(q.Until) {
			continue
		}
		if q.Grep != nil && !q.Grep.MatchString(text) {
			continue
		}
		if emit == nil {
			lines = append(lines, l)
		} else if err := emit(l); err != nil {
			return nil, err
		}
	}
	return lines, nil
}

// lineWriter writes lines as logs.Read does: "[INSTANCE] " when several
// instances are read, the time when asked for.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	q      logs.Query
	prefix bool
}

func (o *lineWriter) setPrefix() {
	o.mu.Lock()
	o.prefix = true
	o.mu.Unlock()
}

func (o *lineWriter) write(l logLine) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sb strings.Builder
	if o.prefix {
		sb.WriteString("[" + l.pod + "] ")
	}
	if o.q.Timestamps {
		sb.WriteString(l.at.UTC().Format(time.RFC3339Nano) + " ")
	}
	sb.WriteString(l.text + "\n")
	if _, err := io.WriteString(o.w, sb.String()); err != nil {
		return err
	}
	if f, ok := o.w.(interface{ Flush() }); ok {
		f.Flush()
	}
	return nil
}
