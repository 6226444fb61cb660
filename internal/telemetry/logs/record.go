package logs

import (
	"bytes"
	"errors"
	"time"
)

// record is one CRI log record: TIMESTAMP STREAM TAG CONTENT.
type record struct {
	time    time.Time
	stream  string
	partial bool
	content string
}

var errBadRecord = errors.New("not a CRI log record")

// parseRecord parses one record, without its newline. It is deliberately
// lenient about the tag (CRI allows "F:more:tags"); anything it cannot read
// is errBadRecord, and the caller keeps the raw text rather than dropping it.
func parseRecord(b []byte) (record, error) {
	ts, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return record{}, errBadRecord
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return record{}, errBadRecord
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || len(stream) == 0 {
		return record{}, errBadRecord
	}
	tag, content, _ := bytes.Cut(rest, []byte{' '})
	tag, _, _ = bytes.Cut(tag, []byte{':'})
	var partial bool
	switch string(tag) {
	case "F":
	case "P":
		partial = true
	default:
		return record{}, errBadRecord
	}
	return record{time: t, stream: string(stream), partial: partial, content: string(content)}, nil
}

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
	r, err := parseRecord(raw)
	if err != nil {
		// Foreign text in the file (hand-written, or a torn write): show it
		// as it is, placed after the record before it.
		return line{time: j.last, instance: instance, text: string(raw)}, true
	}
	j.last = r.time
	if p := j.pending[r.stream]; p != nil {
		p.text += r.content
		if r.partial {
			return line{}, false
		}
		delete(j.pending, r.stream)
		p.time = r.time
		return *p, true
	}
	l := line{time: r.time, instance: instance, text: r.content}
	if r.partial {
		if j.pending == nil {
			j.pending = map[string]*line{}
		}
		j.pending[r.stream] = &l
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
