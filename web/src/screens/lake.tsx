// Lake: the tables with their schema, snapshots, partitions, files and
// sizes, and a preview of rows.
import { get, type LakeTable, type QueryPage, type Whoami } from '../api'
import { go } from '../app'
import { ErrorBox, Table, ago, bytes, num, usePoll } from '../ui'

interface Detail {
  table: string
  location: string
  columns: { field_id: number; name: string; type: string; required: boolean }[]
  partitioned_by: string[]
  snapshots: { snapshot_id: number; committed_at: string; operation: string; current: boolean; summary: Record<string, string> }[]
  partitions: { partition: string; files: number; rows: number; bytes: number }[]
  files: { path: string; partition: string; rows: number; bytes: number }[]
  files_total: number
  rows: number
  bytes: number
}

export function Lake({ who, params }: { who: Whoami; params: URLSearchParams }) {
  if (!who.lake) return <section><h1>Lake</h1><p>This process has no lake: open the console of <code>sluice up</code>, or of a process that loads the lake.</p></section>
  const name = params.get('table') ?? ''
  const tables = usePoll(() => get<{ tables: LakeTable[] }>('/api/v1/lake/tables'), 10000)
  return (
    <section>
      <h1>Lake</h1>
      <ErrorBox error={tables.error} />
      <Table
        columns={['table', 'format', 'rows', 'files', 'size', 'snapshots', 'last commit']}
        rows={(tables.data?.tables ?? []).map((t) => [t.table, t.format, t.rows < 0 ? '-' : num(t.rows), num(t.files), bytes(t.bytes), t.snapshots ?? '', ago(t.snapshot_time)])}
        selected={(tables.data?.tables ?? []).findIndex((t) => t.table === name)}
        onRow={(i) => go('lake', { table: tables.data!.tables[i].table })}
      />
      {name && <TableDetail key={name} name={name} />}
    </section>
  )
}

function TableDetail({ name }: { name: string }) {
  const d = usePoll(() => get<Detail>('/api/v1/lake/tables/' + encodeURIComponent(name)), 0, [name])
  const rows = usePoll(() => get<QueryPage>('/api/v1/lake/tables/' + encodeURIComponent(name) + '/preview', { limit: 20 }), 0, [name])
  return (
    <div data-testid="table-detail">
      <h2>{name}</h2>
      <ErrorBox error={d.error} />
      {d.data && (
        <>
          <p class="muted">{num(d.data.rows)} rows in {num(d.data.files_total)} files, {bytes(d.data.bytes)}, partitioned by {d.data.partitioned_by.join(', ') || 'nothing'} · <code>{d.data.location}</code> · <a href={'#/sql?sql=' + encodeURIComponent('SELECT * FROM ' + name + ' LIMIT 100')}>query it</a></p>
          <div class="split">
            <div class="grow">
              <h3>Schema</h3>
              <Table columns={['field id', 'column', 'type', 'required']} rows={d.data.columns.map((c) => [c.field_id, c.name, c.type, c.required ? 'yes' : ''])} />
            </div>
            <div class="grow">
              <h3>Partitions</h3>
              <Table columns={['partition', 'files', 'rows', 'size']} rows={d.data.partitions.map((p) => [p.partition || '(none)', p.files, num(p.rows), bytes(p.bytes)])} />
            </div>
          </div>
          <h3>Snapshots</h3>
          <Table
            columns={['snapshot', 'committed', 'operation', 'added rows', 'added files', 'total rows', '']}
            rows={[...d.data.snapshots].reverse().slice(0, 50).map((s) => [String(s.snapshot_id), s.committed_at, s.operation, s.summary['added-records'] ?? '', s.summary['added-data-files'] ?? '', s.summary['total-records'] ?? '', s.current ? 'current' : ''])}
          />
          <h3>Files {d.data.files_total > d.data.files.length && <span class="muted">(first {d.data.files.length} of {num(d.data.files_total)})</span>}</h3>
          <Table columns={['file', 'partition', 'rows', 'size']} rows={d.data.files.map((f) => [f.path.split('/').slice(-1)[0], f.partition, num(f.rows), bytes(f.bytes)])} />
        </>
      )}
      <h3>Preview</h3>
      <ErrorBox error={rows.error} />
      {rows.data && <Table columns={rows.data.columns} rows={rows.data.rows} />}
    </div>
  )
}
