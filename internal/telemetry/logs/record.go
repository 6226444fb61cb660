package logs

import (
	"time"

	"berth.dev/berth/internal/runtime/logshim"
)

// line is one whole log line of one instance, as a user reads it.
type line struct {
	time     time.Time
	instance string
	text     string
}

// joiner turns records into lines, holding partial records per stream until
// the record that completes them. A line carries the time of its last
// piece, as the kubelet does: lines then come out of a file in time order
// even when stdout and stderr interleave with a long line.
type joiner struct {
	pending map[string]*line
	last    time.Time
}

func (j *joiner) add(instance string, raw []byte) (line, bool) {
	// The shim writes the records; its parser is the one that reads them.
	r, err := logshim.ParseLine(raw)
	if err != nil {
		// Foreign text in the file (hand-written, or a torn write): show it
		// as it is, placed after the record before it.
		return line{time: j.last, instance: instance, text: string(raw)}, true
	}
	j.last = r.Time
	if p := j.pending[r.Stream]; p != nil {
		p.text += r.Content
		if r.Partial {
			return line{}, false
		}
		delete(j.pending, r.Stream)
		p.time = r.Time
		return *p, true
	}
	l := line{time: r.Time, instance: instance, text: r.Content}
	if r.Partial {
		if j.pending == nil {
			j.pending = map[string]*line{}
		}
		j.pending[r.Stream] = &l
		return line{}, false
	}
	return l, true
}

// flush returns the partial lines that will never be completed (the reader
// reached the end of a log that is not followed), oldest first.
func (j *joiner) flush() []line {
	var out []line
	for _, p := range j.pending {
		out = append(out, *p)
	}
	j.pending = nil
	sortLines(out)
	return out
}
