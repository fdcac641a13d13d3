// Overview: every component's state and last error, events per second per
// stage, consumer lag per group and partition, dead letters per minute by
// reason. It refreshes by itself.
import { useRef } from 'preact/hooks'
import { get, type Status } from '../api'
import { Chart } from '../chart'
import { ErrorBox, ago, num, usePoll } from '../ui'

interface Stats {
  buckets: { time: string; stage: string; reason: string; count: number }[]
}

const keep = 150 // samples of 2 s: five minutes

export function Overview() {
  const history = useRef<{ t: string; rates: Record<string, number> }[]>([])
  const status = usePoll(async () => {
    const s = await get<Status>('/api/v1/status')
    const rates: Record<string, number> = {}
    for (const c of s.components) rates[c.name] = c.records_per_second
    history.current = [...history.current.slice(-keep + 1), { t: new Date().toISOString(), rates }]
    return s
  }, 2000)
  const stats = usePoll(() => get<Stats>('/api/v1/deadletters/stats', { since: '1h', bucket: '1m' }), 10000)
  const s = status.data

  const names = s ? s.components.filter((c) => c.records > 0 || c.records_per_second > 0).map((c) => c.name) : []
  const rateRows: unknown[][] = []
  for (const h of history.current) for (const n of names) rateRows.push([h.t, n, h.rates[n] ?? 0])

  const dlRows = (stats.data?.buckets ?? []).map((b) => [b.time, b.stage + ' ' + b.reason, b.count])

  return (
    <section>
      <h1>Overview {s && <span class={'badge ' + (s.ready ? 'ok' : 'bad')}>{s.ready ? 'ready' : 'not ready'}</span>}</h1>
      <ErrorBox error={status.error} />
      {s && (
        <>
          <h2>Components</h2>
          <div class="table-wrap">
            <table data-testid="components">
              <thead>
                <tr><th>component</th><th>state</th><th>records</th><th>per second</th><th>last error</th></tr>
              </thead>
              <tbody>
                {s.components.map((c) => (
                  <tr key={c.name}>
                    <td>{c.name}</td>
                    <td><span class={'badge ' + (c.ready ? 'ok' : 'bad')}>{c.state}</span>{c.reasons && <div class="muted">{c.reasons.join('; ')}</div>}</td>
                    <td class="n">{num(c.records)}</td>
                    <td class="n">{num(c.records_per_second, 1)}</td>
                    <td>{c.last_error ? <span title={c.last_error.at}>{c.last_error.message} ({ago(c.last_error.at)})</span> : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>Events per second</h2>
          <Chart columns={['time', 'stage', 'events/s']} rows={rateRows} spec={{ kind: 'line', x: 'time', y: 'events/s', series: 'stage' }} height={220} />
          <h2>Consumer lag</h2>
          {s.lag_error && <div class="error">{s.lag_error}</div>}
          <div class="table-wrap">
            <table data-testid="lag">
              <thead>
                <tr><th>group</th><th>topic</th><th>partition</th><th>committed</th><th>end</th><th>lag (records)</th><th>lag (seconds)</th></tr>
              </thead>
              <tbody>
                {s.consumer_groups.flatMap((g) =>
                  g.partitions.map((p) => (
                    <tr key={g.group + p.topic + p.partition}>
                      <td>{g.group} <span class="muted">({g.state}, {g.members} members)</span></td>
                      <td>{p.topic}</td>
                      <td class="n">{p.partition}</td>
                      <td class="n">{num(p.committed)}</td>
                      <td class="n">{num(p.end)}</td>
                      <td class="n">{num(p.lag)}</td>
                      <td class="n">{num(p.lag_seconds, 1)}</td>
                    </tr>
                  )),
                )}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h2>Dead letters per minute, last hour</h2>
      <ErrorBox error={stats.error} />
      {dlRows.length === 0 ? <p class="muted">No dead letters in the last hour.</p> : (
        <Chart columns={['minute', 'reason', 'dead letters']} rows={dlRows} spec={{ kind: 'bar', x: 'minute', y: 'dead letters', series: 'reason' }} height={220} />
      )}
    </section>
  )
}
