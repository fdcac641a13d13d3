package health

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func newTest() (*Reporter, *bytes.Buffer) {
	var logs bytes.Buffer
	r := New("sink.lake", slog.New(slog.NewTextHandler(&logs, nil)))
	r.SetState(Running)
	return r, &logs
}

// TestFaultLoggedOncePeriod reports a fault thousands of times: it is
// logged when it starts, once a LogEvery with how many times it came, and
// when it ends; the component is unready meanwhile and says why.
func TestFaultLoggedOncePeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, logs := newTest()
		full := errors.New("no space left on device")
		for range 3 {
			for range 1000 {
				r.Fault("storage", full)
			}
			time.Sleep(LogEvery / 2)
		}
		err := r.Ready()
		if err == nil || !strings.Contains(err.Error(), "sink.lake: storage failing since") || !strings.Contains(err.Error(), "no space left") {
			t.Errorf("Ready = %v, want the fault", err)
		}
		r.Clear("storage")
		if err := r.Ready(); err != nil {
			t.Errorf("Ready after Clear = %v", err)
		}
		got := logs.String()
		if n := strings.Count(got, "storage failing; will retry"); n != 1 {
			t.Errorf("the fault's start logged %d times, want 1:\n%s", n, got)
		}
		if n := strings.Count(got, "storage still failing"); n != 1 || !strings.Contains(got, "times=2000") {
			t.Errorf("the standing fault logged %d times, want once with times=2000:\n%s", n, got)
		}
		if !strings.Contains(got, "storage recovered") {
			t.Errorf("the recovery is not logged:\n%s", got)
		}
		if st := r.Status(); st.LastError == nil || !strings.Contains(st.LastError.Message, "no space") {
			t.Errorf("status last error = %+v", st.LastError)
		}
	})
}

// TestFlappingFaultLoggedOnce reports a fault that comes and goes many
// times a second, as when some writes fail and some do not.
func TestFlappingFaultLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, logs := newTest()
		for range 500 {
			r.Fault("produce", errors.New("broker refused"))
			time.Sleep(time.Millisecond)
			r.Clear("produce")
		}
		if n := strings.Count(logs.String(), "\n"); n > 2 {
			t.Errorf("%d log lines for a flapping fault, want at most 2:\n%s", n, logs.String())
		}
	})
}

func TestFaultForExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := newTest()
		r.FaultFor("produce", errors.New("refused"), 5*time.Second)
		if r.Ready() == nil {
			t.Fatal("ready with a fault")
		}
		time.Sleep(5 * time.Second)
		if err := r.Ready(); err != nil {
			t.Errorf("the fault did not expire: %v", err)
		}
	})
}

func TestNotReadyUnlessRunning(t *testing.T) {
	r := New("collector", slog.New(slog.DiscardHandler))
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "collector is starting") {
		t.Errorf("Ready while starting = %v", err)
	}
}

func TestRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := newTest()
		for range 30 {
			r.Add(100)
			time.Sleep(time.Second)
		}
		if got := r.Status().RecordsPerSecond; got < 90 || got > 110 {
			t.Errorf("rate = %v, want about 100/s", got)
		}
		time.Sleep(time.Minute)
		if got := r.Status().RecordsPerSecond; got != 0 {
			t.Errorf("rate after a minute idle = %v, want 0", got)
		}
		if got := r.Status().Records; got != 3000 {
			t.Errorf("records = %d, want 3000", got)
		}
	})
}
