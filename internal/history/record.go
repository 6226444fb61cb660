package history

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Kinds says which way a workload ran during a minute: both bits are set
// in the minutes of a conversion.
type Kinds uint8

const (
	RanAsService Kinds = 1 << iota
	RanAsFunction
)

// Minute is one workload's figures for one minute. Counts are what
// happened in the minute; durations are in seconds.
type Minute struct {
	// At is the start of the minute, UTC.
	At    time.Time
	Kinds Kinds
	// Covered is how many seconds of the minute the recorder saw (60 for a
	// whole one; less in the minutes the server started or stopped).
	Covered int
	// Active has bit s set when second s of the minute had a request in
	// flight or arriving: when in the minute the traffic was, to the
	// second, which is what an idle timeout counts from.
	Active uint64
	// Requests arrived; Answered and Errors (5xx) are answers sent.
	Requests, Answered, Errors int64
	// BusySeconds is the sum of the answered requests' durations at the
	// gateway (cold-start waits included): the area under the in-flight
	// curve, so BusySeconds/60 is the mean in flight.
	BusySeconds float64
	// InFlightMax is the largest in-flight count sampled.
	InFlightMax int
	// P50, P90, P99 are the answered requests' durations (from the
	// gateway's histogram buckets, interpolated).
	P50, P90, P99 float64
	// ColdStarts are requests held while the function started from zero,
	// ColdStartSeconds their summed waits.
	ColdStarts       int64
	ColdStartSeconds float64
	// Starts are instances that became ready, StartSeconds the summed time
	// from their start to ready.
	Starts       int64
	StartSeconds float64
	// InstanceSeconds counts running instances (starting, ready or
	// draining; not prepared standbys) over time, ReadySeconds the ready
	// ones; InstancesMax is the most running at once.
	InstanceSeconds, ReadySeconds float64
	InstancesMax                  int
	// CPUSeconds used by the workload's instances; MemoryBytes is their
	// summed working set, mean over the minute's readings, MemoryMaxBytes
	// the largest reading.
	CPUSeconds                  float64
	MemoryBytes, MemoryMaxBytes float64
}

// ActiveSeconds is how many seconds of the minute had traffic.
func (m Minute) ActiveSeconds() int { return bits.OnesCount64(m.Active) }

// Idle reports a minute with nothing in it: no traffic and no instance.
func (m Minute) Idle() bool {
	return m.Requests == 0 && m.Active == 0 && m.InstanceSeconds == 0 && m.Answered == 0
}

// The encoding: a version byte, a uvarint bitmap of the fields present,
// then each present field as a uvarint in fixed point. Zero fields cost
// nothing, so an idle minute is three bytes.
const encodingVersion = 1

// field order of the bitmap; never reorder, only append.
const (
	fKinds = iota
	fCovered
	fActive
	fRequests
	fAnswered
	fErrors
	fBusy
	fInFlightMax
	fP50
	fP90
	fP99
	fColdStarts
	fColdStartSeconds
	fStarts
	fStartSeconds
	fInstanceSeconds
	fReadySeconds
	fInstancesMax
	fCPUSeconds
	fMemory
	fMemoryMax
	// fBusyActive holds Active's complement (plus one, so that it is never
	// zero) when most seconds were active: a busy minute's 60 bits cost
	// one byte instead of nine.
	fBusyActive
	nFields
)

const allSeconds = 1<<60 - 1

// Fixed-point units.
const (
	micro = 1e6 // seconds → microseconds
	milli = 1e3 // instance-seconds → milliseconds
	kib   = 1024.0
)

func (m Minute) values() [nFields]uint64 {
	fx := func(v, unit float64) uint64 {
		if v <= 0 || math.IsNaN(v) {
			return 0
		}
		if v*unit >= math.MaxUint64/2 {
			return math.MaxUint64 / 2
		}
		return uint64(math.Round(v * unit))
	}
	n := func(v int64) uint64 {
		if v < 0 {
			return 0
		}
		return uint64(v)
	}
	var v [nFields]uint64
	v[fKinds] = uint64(m.Kinds)
	v[fCovered] = n(int64(m.Covered))
	if bits.OnesCount64(m.Active) > 30 {
		v[fBusyActive] = (^m.Active & allSeconds) + 1
	} else {
		v[fActive] = m.Active
	}
	v[fRequests] = n(m.Requests)
	v[fAnswered] = n(m.Answered)
	v[fErrors] = n(m.Errors)
	v[fBusy] = fx(m.BusySeconds, micro)
	v[fInFlightMax] = n(int64(m.InFlightMax))
	v[fP50] = fx(m.P50, micro)
	v[fP90] = fx(m.P90, micro)
	v[fP99] = fx(m.P99, micro)
	v[fColdStarts] = n(m.ColdStarts)
	v[fColdStartSeconds] = fx(m.ColdStartSeconds, micro)
	v[fStarts] = n(m.Starts)
	v[fStartSeconds] = fx(m.StartSeconds, micro)
	v[fInstanceSeconds] = fx(m.InstanceSeconds, milli)
	v[fReadySeconds] = fx(m.ReadySeconds, milli)
	v[fInstancesMax] = n(int64(m.InstancesMax))
	v[fCPUSeconds] = fx(m.CPUSeconds, milli)
	v[fMemory] = fx(m.MemoryBytes/kib, 1)
	v[fMemoryMax] = fx(m.MemoryMaxBytes/kib, 1)
	return v
}

// encode appends m's encoding (At is the key, not part of it).
func (m Minute) encode(b []byte) []byte {
	v := m.values()
	var present uint64
	for i, x := range v {
		if x != 0 {
			present |= 1 << i
		}
	}
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, present)
	for _, x := range v {
		if x != 0 {
			b = binary.AppendUvarint(b, x)
		}
	}
	return b
}

// decodeMinute reads what encode wrote.
func decodeMinute(at time.Time, b []byte) (Minute, error) {
	if len(b) < 2 || b[0] != encodingVersion {
		return Minute{}, fmt.Errorf("history record of %v: unknown encoding", at)
	}
	b = b[1:]
	present, n := binary.Uvarint(b)
	if n <= 0 {
		return Minute{}, fmt.Errorf("history record of %v: corrupt", at)
	}
	b = b[n:]
	var v [nFields]uint64
	for i := range 64 {
		if present&(1<<i) == 0 {
			continue
		}
		x, n := binary.Uvarint(b)
		if n <= 0 {
			return Minute{}, fmt.Errorf("history record of %v: corrupt", at)
		}
		b = b[n:]
		if i < nFields { // a field from a later release is skipped
			v[i] = x
		}
	}
	if v[fBusyActive] != 0 {
		v[fActive] = ^(v[fBusyActive] - 1) & allSeconds
	}
	return Minute{
		At:               at,
		Kinds:            Kinds(v[fKinds]),
		Covered:          int(v[fCovered]),
		Active:           v[fActive],
		Requests:         int64(v[fRequests]),
		Answered:         int64(v[fAnswered]),
		Errors:           int64(v[fErrors]),
		BusySeconds:      float64(v[fBusy]) / micro,
		InFlightMax:      int(v[fInFlightMax]),
		P50:              float64(v[fP50]) / micro,
		P90:              float64(v[fP90]) / micro,
		P99:              float64(v[fP99]) / micro,
		ColdStarts:       int64(v[fColdStarts]),
		ColdStartSeconds: float64(v[fColdStartSeconds]) / micro,
		Starts:           int64(v[fStarts]),
		StartSeconds:     float64(v[fStartSeconds]) / micro,
		InstanceSeconds:  float64(v[fInstanceSeconds]) / milli,
		ReadySeconds:     float64(v[fReadySeconds]) / milli,
		InstancesMax:     int(v[fInstancesMax]),
		CPUSeconds:       float64(v[fCPUSeconds]) / milli,
		MemoryBytes:      float64(v[fMemory]) * kib,
		MemoryMaxBytes:   float64(v[fMemoryMax]) * kib,
	}, nil
}
