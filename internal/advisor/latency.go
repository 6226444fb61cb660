package advisor

import "math"

// Latencies is a weighted histogram of the time requests waited: zero in
// a bucket of its own, then buckets 5 % apart from 1 ms to past an hour.
type Latencies struct {
	zero    float64
	buckets [latencyBuckets]float64
}

const (
	latencyBuckets = 320
	latencyMin     = 0.001 // seconds
	latencyGrowth  = 1.05
)

var logGrowth = math.Log(latencyGrowth)

func (l *Latencies) add(wait, weight float64) {
	if weight <= 0 {
		return
	}
	if wait <= 0 {
		l.zero += weight
		return
	}
	i := 0
	if wait > latencyMin {
		i = int(math.Ceil(math.Log(wait/latencyMin) / logGrowth))
	}
	l.buckets[min(i, latencyBuckets-1)] += weight
}

// Total is the weight added.
func (l *Latencies) Total() float64 {
	t := l.zero
	for _, b := range l.buckets {
		t += b
	}
	return t
}

// Quantile is the wait at or below which a share q of the requests
// waited (the bucket's geometric middle, within 2.5 %; 0 when at least q
// waited not at all).
func (l *Latencies) Quantile(q float64) float64 {
	total := l.Total()
	if total <= 0 {
		return 0
	}
	rank := q * total
	if l.zero >= rank-1e-9 {
		return 0
	}
	cum := l.zero
	for i, b := range l.buckets {
		cum += b
		if cum >= rank-1e-9 {
			return bucketMid(i)
		}
	}
	return bucketMid(latencyBuckets - 1)
}

// bucketMid is the geometric middle of bucket i, (growth^(i-1), growth^i]
// times the minimum; bucket 0 holds everything up to the minimum.
func bucketMid(i int) float64 {
	if i == 0 {
		return latencyMin
	}
	return latencyMin * math.Pow(latencyGrowth, float64(i)-0.5)
}

// Mean is the mean wait (each bucket at its middle).
func (l *Latencies) Mean() float64 {
	total := l.Total()
	if total <= 0 {
		return 0
	}
	var sum float64
	for i, b := range l.buckets {
		sum += b * bucketMid(i)
	}
	return sum / total
}
