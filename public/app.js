const tbody = document.querySelector('#jobs tbody')
const message = document.getElementById('message')

async function refresh () {
  const res = await fetch('/api/jobs?limit=50')
  const { jobs } = await res.json()
  tbody.replaceChildren(...jobs.map((job) => {
    const tr = document.createElement('tr')
    for (const text of [job.id, job.status, `${job.progress.toFixed(1)} % (step ${job.step}/${job.steps})`, job.result ? job.result.lyapunov.toFixed(6) : job.error ?? '']) {
      const td = document.createElement('td')
      td.textContent = String(text)
      tr.append(td)
    }
    return tr
  }))
}

document.getElementById('submit').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(event.target)
  const res = await fetch('/api/jobs', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ n: Number(form.get('n')), steps: Number(form.get('steps')) })
  })
  const body = await res.json()
  message.textContent = res.ok ? `job ${body.id} submitted` : body.message
  refresh()
})

refresh()
setInterval(refresh, 1000)
