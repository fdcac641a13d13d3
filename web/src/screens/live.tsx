// Live events: a live tail of a topic (server-sent events), filtered by
// event type or a field's value, paused and resumed without losing its
// place: the stream's last id is where it resumes.
import { useEffect, useRef, useState } from 'preact/hooks'
import { get, withKey, type ShownRecord, type Whoami } from '../api'
import { go } from '../app'
import { JSONView, usePoll } from '../ui'

const maxShown = 300

export function Live({ who, params }: { who: Whoami; params: URLSearchParams }) {
  const topics = usePoll(() => get<{ topics: { topic: string }[] }>('/api/v1/topics'), 0)
  const topic = params.get('topic') || who.topics.raw
  const eventType = params.get('event_type') ?? ''
  const field = params.get('field') ?? ''
  const value = params.get('value') ?? ''
  const [paused, setPaused] = useState(false)
  const [records, setRecords] = useState<ShownRecord[]>([])
  const [state, setState] = useState('connecting')
  const lastId = useRef('')
  const seen = useRef(0)

  useEffect(() => {
    lastId.current = ''
    seen.current = 0
    setRecords([])
  }, [topic, eventType, field, value])

  useEffect(() => {
    if (paused) {
      setState('paused')
      return
    }
    const q = new URLSearchParams()
    if (eventType) q.set('event_type', eventType)
    if (field) q.set('field', field)
    if (value) q.set('value', value)
    if (lastId.current) q.set('from', lastId.current)
    const es = new EventSource(withKey('/api/v1/topics/' + encodeURIComponent(topic) + '/live?' + q.toString()))
    setState('connecting')
    es.addEventListener('ready', (e) => {
      lastId.current = (e as MessageEvent).lastEventId || lastId.current
      setState('live')
    })
    es.onmessage = (e) => {
      lastId.current = e.lastEventId || lastId.current
      seen.current++
      const r = JSON.parse(e.data) as ShownRecord
      setRecords((rs) => [r, ...rs].slice(0, maxShown))
    }
    es.onerror = () => setState('reconnecting')
    return () => es.close()
  }, [topic, eventType, field, value, paused])

  const set = (k: string, v: string) => go('live', { topic, event_type: eventType, field, value, [k]: v }, true)
  return (
    <section>
      <h1>Live events</h1>
      <div class="toolbar">
        <label>Topic <select value={topic} onChange={(e) => set('topic', e.currentTarget.value)}>
          {(topics.data?.topics ?? [{ topic }]).map((t) => <option key={t.topic}>{t.topic}</option>)}
        </select></label>
        <label>Event type <input value={eventType} placeholder="any" onChange={(e) => set('event_type', e.currentTarget.value)} /></label>
        <label>Field <input value={field} placeholder="e.g. PULocationID" onChange={(e) => set('field', e.currentTarget.value)} /></label>
        <label>= value <input value={value} placeholder="any" onChange={(e) => set('value', e.currentTarget.value)} /></label>
        <button onClick={() => setPaused(!paused)} data-testid="pause">{paused ? 'Resume' : 'Pause'}</button>
        <span class={'badge ' + (state === 'live' ? 'ok' : 'warn')} data-testid="live-state">{state}</span>
        <span class="muted">{seen.current} received{lastId.current && ' · at ' + lastId.current}</span>
      </div>
      {records.length === 0 && <p class="muted">Waiting for new records on {topic}…</p>}
      <div class="records" data-testid="live-records">
        {records.map((r) => (
          <details key={r.partition + ':' + r.offset} class="record">
            <summary>
              <code>{r.partition}/{r.offset}</code> {r.timestamp} {r.headers?.event_type && <b>{r.headers.event_type}</b>} <span class="muted">{r.key}</span>
            </summary>
            <JSONView value={r.value} />
          </details>
        ))}
      </div>
    </section>
  )
}
