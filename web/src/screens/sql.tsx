// SQL: an editor with the lake's tables and columns at hand, results a
// page at a time, a CSV download of the whole result, a chart of it, and
// saved queries. The query and the chart are kept in the URL, so a link
// shares them.
import { useEffect, useRef, useState } from 'preact/hooks'
import { del, get, post, withKey, type LakeTable, type QueryPage, type Whoami } from '../api'
import { go } from '../app'
import { Chart, type ChartKind } from '../chart'
import { ErrorBox, Pager, Table, usePoll } from '../ui'

interface Saved {
  name: string
  sql: string
  chart?: { kind: ChartKind; x: string; y: string; series?: string }
  saved_at: string
}

const pageSize = 100

export function SQL({ who, admin, params }: { who: Whoami; admin: boolean; params: URLSearchParams }) {
  const urlSQL = params.get('sql') ?? ''
  const kind = (params.get('chart') ?? '') as ChartKind | ''
  const x = params.get('x') ?? ''
  const y = params.get('y') ?? ''
  const series = params.get('series') ?? ''
  const [text, setText] = useState(urlSQL || 'SELECT * FROM dead_letter LIMIT 10')
  const [offset, setOffset] = useState(0)
  const [result, setResult] = useState<QueryPage | null>(null)
  const [error, setError] = useState('')
  const [running, setRunning] = useState(false)
  const [columnsOf, setColumnsOf] = useState<Record<string, string[]>>({})
  const editor = useRef<HTMLTextAreaElement>(null)
  const tables = usePoll(() => (who.lake ? get<{ tables: LakeTable[] }>('/api/v1/lake/tables') : Promise.resolve({ tables: [] })), 0)
  const saved = usePoll(() => get<{ queries: Saved[] }>('/api/v1/queries').catch(() => ({ queries: [] as Saved[] })), 0)

  const state = (over: Record<string, string | undefined>) => ({ sql: urlSQL, chart: kind, x, y, series, ...over })

  const run = async (q: string, off: number) => {
    setRunning(true)
    setError('')
    try {
      setResult(await post<QueryPage>('/api/v1/query', { sql: q, offset: off, limit: pageSize }))
      setOffset(off)
    } catch (e) {
      setResult(null)
      setError(String((e as Error).message))
    }
    setRunning(false)
  }
  useEffect(() => {
    if (urlSQL) {
      setText(urlSQL)
      run(urlSQL, 0)
    }
  }, [urlSQL])

  const submit = () => {
    if (text === urlSQL) run(text, 0)
    else go('sql', state({ sql: text }))
  }
  const insert = (s: string) => {
    const el = editor.current
    if (!el) return
    const [a, b] = [el.selectionStart, el.selectionEnd]
    const v = text.slice(0, a) + s + text.slice(b)
    setText(v)
    requestAnimationFrame(() => {
      el.focus()
      el.selectionStart = el.selectionEnd = a + s.length
    })
  }
  const showColumns = async (t: string) => {
    if (columnsOf[t]) {
      const { [t]: _, ...rest } = columnsOf
      setColumnsOf(rest)
      return
    }
    try {
      const d = await get<{ columns: { name: string }[] }>('/api/v1/lake/tables/' + encodeURIComponent(t))
      setColumnsOf({ ...columnsOf, [t]: d.columns.map((c) => c.name) })
    } catch {
      setColumnsOf({ ...columnsOf, [t]: [] })
    }
  }
  const save = async () => {
    const name = prompt('Save this query as:')
    if (!name) return
    try {
      await post('/api/v1/queries', { name, sql: text, chart: kind ? { kind, x, y, series } : undefined })
      saved.reload()
    } catch (e) {
      setError(String((e as Error).message))
    }
  }

  const cols = result?.columns ?? []
  return (
    <section>
      <h1>SQL</h1>
      <div class="split">
        <aside class="schema" data-testid="schema">
          <h3>Tables</h3>
          {(tables.data?.tables ?? []).map((t) => (
            <div key={t.table}>
              <button class="link" onClick={() => showColumns(t.table)} title="show its columns">{columnsOf[t.table] ? '▾' : '▸'}</button>{' '}
              <button class="link" onClick={() => insert(t.table)} title="insert the name">{t.table}</button>
              {columnsOf[t.table] && <ul>{columnsOf[t.table].map((c) => <li key={c}><button class="link" onClick={() => insert(c)}>{c}</button></li>)}</ul>}
            </div>
          ))}
          <h3>Saved</h3>
          {(saved.data?.queries ?? []).map((q) => (
            <div key={q.name}>
              <button class="link" onClick={() => go('sql', { sql: q.sql, chart: q.chart?.kind, x: q.chart?.x, y: q.chart?.y, series: q.chart?.series })}>{q.name}</button>
              {admin && <button class="link danger" title="delete" onClick={async () => { await del('/api/v1/queries/' + encodeURIComponent(q.name)); saved.reload() }}>×</button>}
            </div>
          ))}
          {(saved.data?.queries.length ?? 0) === 0 && <p class="muted">None yet.</p>}
        </aside>
        <div class="grow">
          <textarea
            ref={editor}
            class="editor sql"
            rows={8}
            value={text}
            spellcheck={false}
            data-testid="sql-editor"
            onInput={(e) => setText(e.currentTarget.value)}
            onKeyDown={(e) => {
              if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
                e.preventDefault()
                submit()
              }
            }}
          />
          <div class="toolbar">
            <button onClick={submit} disabled={running} data-testid="run">{running ? 'Running…' : 'Run (Ctrl+Enter)'}</button>
            {urlSQL && <a class="button" href={withKey('/api/v1/query.csv?sql=' + encodeURIComponent(urlSQL))} download="sluice-query.csv">Download CSV</a>}
            {admin && <button onClick={save}>Save…</button>}
            {result && <span class="muted">{result.elapsed_ms} ms</span>}
          </div>
          <ErrorBox error={error} />
          {result && (
            <>
              <div class="toolbar chart-controls">
                <label>Chart <select value={kind} data-testid="chart-kind" onChange={(e) => go('sql', state({ chart: e.currentTarget.value, x: x || cols[0], y: y || cols[1] }), true)}>
                  <option value="">none</option><option value="line">line</option><option value="bar">bar</option><option value="area">area</option>
                </select></label>
                {kind && (
                  <>
                    <label>x <select value={x} data-testid="chart-x" onChange={(e) => go('sql', state({ x: e.currentTarget.value }), true)}>{cols.map((c) => <option key={c}>{c}</option>)}</select></label>
                    <label>y <select value={y} data-testid="chart-y" onChange={(e) => go('sql', state({ y: e.currentTarget.value }), true)}>{cols.map((c) => <option key={c}>{c}</option>)}</select></label>
                    <label>series <select value={series} data-testid="chart-series" onChange={(e) => go('sql', state({ series: e.currentTarget.value }), true)}><option value="">none</option>{cols.map((c) => <option key={c}>{c}</option>)}</select></label>
                  </>
                )}
              </div>
              {kind && <Chart columns={result.columns} rows={result.rows} spec={{ kind, x, y, series: series || undefined }} />}
              <div data-testid="result">
                <Table columns={result.columns} rows={result.rows} />
              </div>
              <Pager
                label={result.rows.length ? `rows ${offset + 1}–${offset + result.rows.length}` : 'no rows'}
                onPrev={offset > 0 ? () => run(urlSQL, Math.max(0, offset - pageSize)) : undefined}
                onNext={result.more ? () => run(urlSQL, offset + pageSize) : undefined}
              />
            </>
          )}
        </div>
      </div>
    </section>
  )
}
