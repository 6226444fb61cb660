package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	v1 "berth.dev/berth/api/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers a function sees on every asynchronous delivery.
const (
	HeaderInvocationID = "X-Berth-Invocation-Id"
	HeaderAttempt      = "X-Berth-Attempt"
	HeaderSource       = "X-Berth-Source"
	// Dead letters carry the failed function, its error and (because
	// X-Berth-Invocation-Id is the delivering invocation's own id by the
	// time a subscriber sees it) the failed invocation's id.
	HeaderFunction           = "X-Berth-Function"
	HeaderError              = "X-Berth-Error"
	HeaderFailedInvocationID = "X-Berth-Failed-Invocation-Id"
	maxStoredBody            = 256 << 10
	internalID               = "Berth-Id"
	internalSource           = "Berth-Source"
	internalCreated          = "Berth-Created"
	internalCallback         = "Berth-Callback"
	userHeaderPrefix         = "H-"
)

// record is what the invocations bucket holds: the Invocation the API shows,
// plus when the next attempt may start.
type record struct {
	v1.Invocation
	// NotBefore is the earliest start of the next attempt, in real time. A
	// consumer restarted after a crash delivers at once; this keeps the
	// backoff.
	NotBefore time.Time `json:"notBefore,omitzero"`
}

func (r *record) terminal() bool {
	return r.Status == v1.InvocationSucceeded || r.Status == v1.InvocationFailed
}

func invKey(env, id string) string { return env + "." + id }

func workSubject(env, fn string) string { return "inv." + env + "." + fn }

func topicSubject(env, topic string) string { return "topic." + env + "." + topic }

// crockford is ULID's alphabet: ids sort by creation time as text.
var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a 26-character ULID-like id: 48 bits of milliseconds, then
// 80 random bits.
func newID(t time.Time) string {
	var b [16]byte
	putMillis(b[:], t)
	_, _ = rand.Read(b[6:])
	return crockford.EncodeToString(b[:])
}

// derivedID is newID with the random part replaced by a hash of parts, for
// invocations that a redelivery or a restart may create twice (a topic
// message's fan-out, a cron tick): the same parts give the same id, and the
// record's create-if-absent makes the second a no-op.
func derivedID(t time.Time, parts ...string) string {
	var b [16]byte
	putMillis(b[:], t)
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	copy(b[6:], h[:10])
	return crockford.EncodeToString(b[:])
}

func putMillis(b []byte, t time.Time) {
	var m [8]byte
	binary.BigEndian.PutUint64(m[:], uint64(t.UnixMilli()))
	copy(b[:6], m[2:])
}

// validID accepts what newID makes, so that a caller's id never reaches a KV
// key with a wildcard or separator in it.
func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	_, err := crockford.DecodeString(id)
	return err == nil
}

// validToken accepts a name that is safe as one subject token and part of a
// consumer name: Berth's names are DNS labels.
func validToken(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// storedBody caps a response body and makes it a string: text as is, other
// bytes in base64 (as the Invocation type documents).
func storedBody(b []byte) string {
	if len(b) > maxStoredBody {
		b = b[:maxStoredBody]
		// Do not cut a UTF-8 sequence in half.
		for len(b) > 0 && !utf8.Valid(b) && len(b) > maxStoredBody-4 {
			b = b[:len(b)-1]
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// messageHeader puts the user's HTTP headers under a prefix, so that none of
// them can be taken for one of NATS's own (Nats-Msg-Id and friends).
func messageHeader(h http.Header) nats.Header {
	out := nats.Header{}
	for k, vs := range h {
		out[userHeaderPrefix+textproto.CanonicalMIMEHeaderKey(k)] = append([]string(nil), vs...)
	}
	return out
}

func userHeader(h nats.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, userHeaderPrefix); ok {
			out[textproto.CanonicalMIMEHeaderKey(name)] = append([]string(nil), vs...)
		}
	}
	return out
}

func (q *Queue) loadRecord(ctx context.Context, env, id string) (*record, uint64, error) {
	e, err := q.invKV.Get(ctx, invKey(env, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, v1.NotFound("invocation %q not found in environment %q", id, env)
	}
	if err != nil {
		return nil, 0, v1.Unavailable("queue: read invocation %s: %v", id, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("queue: decode invocation %s: %w", id, err)
	}
	return &r, e.Revision(), nil
}

func (q *Queue) putRecord(ctx context.Context, r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := q.invKV.Put(ctx, invKey(r.Environment, r.ID), data); err != nil {
		return v1.Unavailable("queue: write invocation %s: %v", r.ID, err)
	}
	return nil
}

// submit stores an invocation and its work message. The record is created
// only if absent: for a derived id seen before, a finished invocation is
// left alone and a pending one is published again (the stream drops the
// duplicate inside its window; the worker skips a finished one outside it).
func (q *Queue) submit(ctx context.Context, r *record, body []byte, header http.Header) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = q.invKV.Create(ctx, invKey(r.Environment, r.ID), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		old, _, lerr := q.loadRecord(ctx, r.Environment, r.ID)
		if lerr != nil {
			return lerr
		}
		if old.terminal() {
			return nil
		}
	} else if err != nil {
		return v1.Unavailable("queue: store invocation: %v", err)
	}
	msg := nats.NewMsg(workSubject(r.Environment, r.Function))
	msg.Header = messageHeader(header)
	msg.Header.Set(internalID, r.ID)
	msg.Header.Set(internalSource, r.Source)
	msg.Header.Set(internalCreated, r.Created.UTC().Format(time.RFC3339Nano))
	if r.CallbackURL != "" {
		msg.Header.Set(internalCallback, r.CallbackURL)
	}
	msg.Data = body
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(r.ID), jetstream.WithExpectStream(workStream)); err != nil {
		return v1.Unavailable("queue: store invocation message: %v", err)
	}
	return nil
}

// recordFromMessage rebuilds a pending record from its work message, for a
// record that expired (or was never written because the process died
// between the two writes of a derived submit).
func recordFromMessage(env, fn string, h nats.Header) *record {
	created, _ := time.Parse(time.RFC3339Nano, h.Get(internalCreated))
	return &record{Invocation: v1.Invocation{
		ID:          h.Get(internalID),
		Environment: env,
		Function:    fn,
		Source:      h.Get(internalSource),
		Status:      v1.InvocationPending,
		Created:     created,
		CallbackURL: h.Get(internalCallback),
	}}
}

func tooLarge(what string, n, limit int) error {
	return v1.Errorf(v1.ErrTooLarge, "%s is %d bytes, over the limit of %d bytes", what, n, limit)
}
