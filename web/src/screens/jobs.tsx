// Jobs and checks: the batch layer's runs and the failing rows of its
// data-quality checks, newest first, a page at a time.
import { useState } from 'preact/hooks'
import { get, type QueryPage, type Whoami } from '../api'
import { ErrorBox, Pager, Table, usePoll } from '../ui'

function Paged({ path, title, testid }: { path: string; title: string; testid: string }) {
  const [offset, setOffset] = useState(0)
  const page = usePoll(() => get<QueryPage>(path, { offset, limit: 50 }), 10000, [offset])
  return (
    <div data-testid={testid}>
      <h2>{title}</h2>
      <ErrorBox error={page.error} />
      {page.data && page.data.columns.length === 0 && <p class="muted">None yet: the batch layer has not run here.</p>}
      {page.data && page.data.columns.length > 0 && (
        <>
          <Table columns={page.data.columns} rows={page.data.rows} />
          <Pager label={`rows ${offset + 1}–${offset + page.data.rows.length}`} onPrev={offset > 0 ? () => setOffset(Math.max(0, offset - 50)) : undefined} onNext={page.data.more ? () => setOffset(offset + 50) : undefined} />
        </>
      )}
    </div>
  )
}

export function Jobs({ who }: { who: Whoami }) {
  if (!who.lake) return <section><h1>Jobs and checks</h1><p>This process has no lake.</p></section>
  return (
    <section>
      <h1>Jobs and checks</h1>
      <Paged path="/api/v1/jobs/runs" title="Runs" testid="job-runs" />
      <Paged path="/api/v1/jobs/failures" title="Failing rows of checks" testid="check-failures" />
    </section>
  )
}
