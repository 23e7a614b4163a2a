// Command lbbench runs lbwire's benchmark scenarios with go-liftbridge, the
// reference Liftbridge client, so that benchmarks/run.py can compare the
// Python clients with it against the same server in the same run.
//
// It takes one job as JSON on -job (the same job the Python workers get) and
// prints one JSON object: {"samples": [...], "unit": "...", "extra": {...}}
// or {"error": "..."}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lift "github.com/liftbridge-io/go-liftbridge/v2"
)

// job mirrors the JSON the Python orchestrator sends (benchmarks/_jobs.py).
type job struct {
	Scenario    string  `json:"scenario"`
	Broker      string  `json:"broker"`
	Stream      string  `json:"stream"`
	Count       int     `json:"count"`
	Size        int     `json:"size"`
	Reps        int     `json:"reps"`
	InFlight    int     `json:"in_flight"`
	Partitions  int     `json:"partitions"`
	Checkpoints int     `json:"checkpoints"`
	CursorID    string  `json:"cursor_id"`
	Batches     bool    `json:"batches"`
	Timeout     float64 `json:"timeout"`
}

type result struct {
	Samples []float64              `json:"samples"`
	Unit    string                 `json:"unit"`
	Extra   map[string]interface{} `json:"extra,omitempty"`
	Error   string                 `json:"error,omitempty"`
	Skipped string                 `json:"skipped,omitempty"`
}

func main() {
	spec := flag.String("job", "", "the job, as JSON")
	flag.Parse()
	var j job
	if err := json.Unmarshal([]byte(*spec), &j); err != nil {
		fail(fmt.Errorf("bad -job: %w", err))
	}
	if j.Reps < 1 {
		j.Reps = 1
	}
	if j.Timeout <= 0 {
		j.Timeout = 120
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(j.Timeout*float64(time.Second)))
	defer cancel()
	res, err := run(ctx, j)
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func fail(err error) {
	out, _ := json.Marshal(result{Error: err.Error()})
	fmt.Println(string(out))
	os.Exit(1)
}

func run(ctx context.Context, j job) (*result, error) {
	if j.Scenario == "first_message" {
		return firstMessage(ctx, j)
	}
	switch {
	case j.Scenario == "subscribe_batches":
		return &result{Skipped: "go-liftbridge has no batches"}, nil
	case j.Scenario == "subscribe_stream" && !j.Batches:
		// No batches either way: its figure is subscribe_stream_16p's.
		return &result{Skipped: "a goroutine per partition, as in subscribe_stream_16p"}, nil
	}
	client, err := lift.Connect([]string{j.Broker})
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer client.Close()
	res := &result{Extra: map[string]interface{}{}}
	value := make([]byte, j.Size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	for rep := 0; rep < j.Reps; rep++ {
		switch j.Scenario {
		case "subscribe":
			res.Unit = "msgs/s"
			elapsed, err := subscribe(ctx, client, j.Stream, j.Count, nil)
			if err != nil {
				return nil, err
			}
			res.Samples = append(res.Samples, float64(j.Count)/elapsed.Seconds())
		case "connect":
			// Only start and connect: the CPU baseline of a worker.
			res.Unit = "none"
		case "subscribe_partitions", "subscribe_stream": // a goroutine per partition
			res.Unit = "msgs/s"
			elapsed, err := subscribePartitions(ctx, client, j.Stream, j.Partitions, j.Count)
			if err != nil {
				return nil, err
			}
			res.Samples = append(res.Samples, float64(j.Count*j.Partitions)/elapsed.Seconds())
		case "subscribe_rss":
			res.Unit = "MB"
			every := j.Count / max(j.Checkpoints, 1)
			var marks []float64
			if _, err := subscribe(ctx, client, j.Stream, j.Count, func(n int) {
				if every > 0 && n%every == 0 {
					marks = append(marks, peakRSSMB())
				}
			}); err != nil {
				return nil, err
			}
			res.Samples = append(res.Samples, peakRSSMB())
			res.Extra["checkpoints_mb"] = marks
		case "publish_unacked", "publish_fire_and_forget":
			res.Unit = "msgs/s"
			start := time.Now()
			for i := 0; i < j.Count; i++ {
				if _, err := client.Publish(ctx, j.Stream, value, lift.AckPolicyNone()); err != nil {
					return nil, fmt.Errorf("publish: %w", err)
				}
			}
			res.Samples = append(res.Samples, float64(j.Count)/time.Since(start).Seconds())
		case "publish_acked":
			res.Unit = "msgs/s"
			latencies := make([]float64, 0, j.Count)
			start := time.Now()
			for i := 0; i < j.Count; i++ {
				t := time.Now()
				if _, err := client.Publish(ctx, j.Stream, value, lift.AckPolicyLeader()); err != nil {
					return nil, fmt.Errorf("publish: %w", err)
				}
				latencies = append(latencies, float64(time.Since(t).Microseconds())/1000)
			}
			res.Samples = append(res.Samples, float64(j.Count)/time.Since(start).Seconds())
			appendP99(res, latencies)
		case "publish_pipelined", "publish_batch":
			res.Unit = "msgs/s"
			elapsed, err := pipelined(ctx, client, j, value)
			if err != nil {
				return nil, err
			}
			res.Samples = append(res.Samples, float64(j.Count)/elapsed.Seconds())
		case "cursor_roundtrip":
			res.Unit = "pairs/s"
			start := time.Now()
			for i := 0; i < j.Count; i++ {
				if err := client.SetCursor(ctx, j.CursorID, j.Stream, 0, int64(i)); err != nil {
					return nil, fmt.Errorf("set cursor: %w", err)
				}
				if _, err := client.FetchCursor(ctx, j.CursorID, j.Stream, 0); err != nil {
					return nil, fmt.Errorf("fetch cursor: %w", err)
				}
			}
			res.Samples = append(res.Samples, float64(j.Count)/time.Since(start).Seconds())
		default:
			return nil, fmt.Errorf("unknown scenario %q", j.Scenario)
		}
	}
	return res, nil
}

func appendP99(res *result, latencies []float64) {
	sort.Float64s(latencies)
	p99 := latencies[(len(latencies)*99)/100]
	prev, _ := res.Extra["p99_ms"].([]float64)
	res.Extra["p99_ms"] = append(prev, p99)
}

// subscribe reads count messages from the start of the stream and returns the
// time from the Subscribe call to the last of them.
func subscribe(ctx context.Context, client lift.Client, stream string, count int, each func(int)) (time.Duration, error) {
	return subscribeEach(ctx, client, stream, 1, count, each)
}

// subscribePartitions reads count messages from the start of each of the
// partitions 0..partitions-1 at once, and returns the time to the last one.
func subscribePartitions(ctx context.Context, client lift.Client, stream string, partitions, count int) (time.Duration, error) {
	return subscribeEach(ctx, client, stream, partitions, count, nil)
}

func subscribeEach(ctx context.Context, client lift.Client, stream string, partitions, count int, each func(int)) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	var n int64
	total := int64(partitions * count)
	start := time.Now()
	for p := 0; p < partitions; p++ {
		var mine int64
		err := client.Subscribe(ctx, stream, func(msg *lift.Message, err error) {
			if err != nil {
				select {
				case done <- err:
				default:
				}
				return
			}
			// Each partition counts only its first count messages.
			if atomic.AddInt64(&mine, 1) > int64(count) {
				return
			}
			got := atomic.AddInt64(&n, 1)
			if each != nil {
				each(int(got))
			}
			if got == total {
				done <- nil
			}
		}, lift.StartAtEarliestReceived(), lift.Partition(int32(p)))
		if err != nil {
			return 0, fmt.Errorf("subscribe to partition %d: %w", p, err)
		}
	}
	select {
	case err := <-done:
		elapsed := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("subscription: %w", err)
		}
		return elapsed, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("subscription: %d of %d messages: %w", atomic.LoadInt64(&n), total, ctx.Err())
	}
}

// pipelined publishes count messages with PublishAsync, at most InFlight
// awaiting their ack at any time.
func pipelined(ctx context.Context, client lift.Client, j job, value []byte) (time.Duration, error) {
	slots := make(chan struct{}, j.InFlight)
	errs := make(chan error, 1)
	start := time.Now()
	for i := 0; i < j.Count; i++ {
		select {
		case slots <- struct{}{}:
		case err := <-errs:
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		err := client.PublishAsync(ctx, j.Stream, value, func(ack *lift.Ack, err error) {
			if err != nil {
				select {
				case errs <- fmt.Errorf("ack: %w", err):
				default:
				}
			}
			<-slots
		}, lift.AckPolicyLeader())
		if err != nil {
			return 0, fmt.Errorf("publish async: %w", err)
		}
	}
	for k := 0; k < j.InFlight; k++ { // wait for the last acks
		select {
		case slots <- struct{}{}:
		case err := <-errs:
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return time.Since(start), nil
}

// firstMessage times, Reps times, a new client from its creation to the
// first message of a subscription from the start of the stream.
func firstMessage(ctx context.Context, j job) (*result, error) {
	res := &result{Unit: "ms"}
	for rep := 0; rep < j.Reps; rep++ {
		start := time.Now()
		client, err := lift.Connect([]string{j.Broker})
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		if _, err := subscribe(ctx, client, j.Stream, 1, nil); err != nil {
			client.Close()
			return nil, err
		}
		res.Samples = append(res.Samples, float64(time.Since(start).Microseconds())/1000)
		client.Close()
	}
	return res, nil
}

// peakRSSMB reads the process's peak resident set size (VmHWM) in MB.
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "VmHWM:") {
			fields := strings.Fields(line)
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				return -1
			}
			return kb / 1024
		}
	}
	return -1
}
