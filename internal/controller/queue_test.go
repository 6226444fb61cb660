package controller

import "testing"

func TestQueueDeduplicatesAndRequeuesDirtyKeys(t *testing.T) {
	q := newQueue()
	q.Add("a")
	q.Add("b")
	q.Add("a") // already queued: no second entry
	k, _ := q.Get()
	if k != "a" {
		t.Fatalf("got %q first", k)
	}
	q.Add("a") // added while processing: comes back after Done, once
	q.Add("a")
	if k, _ := q.Get(); k != "b" {
		t.Fatalf("a key being processed was handed out again; got %q", k)
	}
	q.Done("b")
	q.Done("a")
	if k, _ := q.Get(); k != "a" {
		t.Fatalf("dirty key not requeued; got %q", k)
	}
	q.Done("a")
	q.Close()
	if _, ok := q.Get(); ok {
		t.Fatal("Get after Close with an empty queue should report closed")
	}
}
