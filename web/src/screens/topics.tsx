// Topic browser: each topic's partitions and offsets, and a partition's
// records a page at a time, from an offset or a time, each with its key,
// headers and value pretty-printed. Pages come from the server: a topic of
// millions of records opens at once.
import { get, type ShownRecord } from '../api'
import { go } from '../app'
import { ErrorBox, JSONView, Pager, num, usePoll } from '../ui'

interface TopicInfo {
  topic: string
  partitions: { partition: number; start_offset: number; end_offset: number }[]
  offsets: number
}
interface RecordsPage {
  start_offset: number
  end_offset: number
  records: ShownRecord[]
  next: number
}

const pageSize = 25

export function Topics({ params }: { params: URLSearchParams }) {
  const topics = usePoll(() => get<{ topics: TopicInfo[] }>('/api/v1/topics'), 5000)
  const topic = params.get('topic') ?? ''
  const partition = params.get('partition') ?? '0'
  const offset = params.get('offset') ?? ''
  const time = params.get('time') ?? ''
  const page = usePoll(
    () => (topic ? get<RecordsPage>('/api/v1/topics/' + encodeURIComponent(topic) + '/records', { partition, offset, time, limit: pageSize }) : Promise.resolve(null)),
    0,
    [topic, partition, offset, time],
  )
  const info = topics.data?.topics.find((t) => t.topic === topic)
  const from = page.data?.records[0]?.offset
  return (
    <section>
      <h1>Topics</h1>
      <ErrorBox error={topics.error} />
      <div class="split">
        <div class="table-wrap narrow">
          <table data-testid="topics">
            <thead><tr><th>topic</th><th>partitions</th><th>offsets</th></tr></thead>
            <tbody>
              {(topics.data?.topics ?? []).map((t) => (
                <tr key={t.topic} class={'clickable ' + (t.topic === topic ? 'selected' : '')} onClick={() => go('topics', { topic: t.topic, partition: '0' })}>
                  <td>{t.topic}</td><td class="n">{t.partitions.length}</td><td class="n">{num(t.offsets)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div class="grow">
          {!topic && <p class="muted">Pick a topic.</p>}
          {info && (
            <>
              <div class="toolbar">
                <label>Partition <select value={partition} onChange={(e) => go('topics', { topic, partition: e.currentTarget.value })}>
                  {info.partitions.map((p) => <option key={p.partition} value={p.partition}>{p.partition} ({num(p.start_offset)}–{num(p.end_offset)})</option>)}
                </select></label>
                <form onSubmit={(e) => { e.preventDefault(); go('topics', { topic, partition, offset: (e.currentTarget.elements.namedItem('o') as HTMLInputElement).value }) }}>
                  <label>Offset <input name="o" type="number" min="0" defaultValue={offset} /></label> <button>Seek</button>
                </form>
                <form onSubmit={(e) => { e.preventDefault(); go('topics', { topic, partition, time: (e.currentTarget.elements.namedItem('t') as HTMLInputElement).value }) }}>
                  <label>Time <input name="t" placeholder="2026-12-01T10:00:00Z or 1h" defaultValue={time} /></label> <button>Seek</button>
                </form>
              </div>
              <ErrorBox error={page.error} />
              {page.data && (
                <>
                  <Pager
                    label={page.data.records.length ? `offsets ${num(from)}–${num(page.data.records[page.data.records.length - 1].offset)} of ${num(page.data.start_offset)}–${num(page.data.end_offset)}` : 'no records here'}
                    onPrev={from !== undefined && from > page.data.start_offset ? () => go('topics', { topic, partition, offset: String(Math.max(page.data!.start_offset, from - pageSize)) }) : undefined}
                    onNext={page.data.next < page.data.end_offset ? () => go('topics', { topic, partition, offset: String(page.data!.next) }) : undefined}
                  />
                  <div class="records" data-testid="records">
                    {page.data.records.map((r) => (
                      <details key={r.offset} class="record" open={page.data!.records.length <= 3}>
                        <summary><code>{r.partition}/{r.offset}</code> {r.timestamp} {r.headers?.event_type && <b>{r.headers.event_type}</b>} <span class="muted">key {r.key || '-'}</span></summary>
                        {r.headers && <table class="headers"><tbody>{Object.entries(r.headers).map(([k, v]) => <tr key={k}><th>{k}</th><td>{v}</td></tr>)}</tbody></table>}
                        <JSONView value={r.value} />
                      </details>
                    ))}
                  </div>
                </>
              )}
            </>
          )}
        </div>
      </div>
    </section>
  )
}
