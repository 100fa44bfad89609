"""The one-page web UI served at ``/`` (plain HTML + fetch; no build step, no external files).

It lists the server's voices (``/voices``), takes an uploaded reference instead, posts the form to
``/tts`` as multipart data and plays / offers the WAV. ``/?voice=NAME&text=...&autorun=1`` fills
the form and speaks at once (used by the headless-browser test); the result shows in
``#status`` and the page title.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gsv-jax TTS</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
 label{display:block;margin:.6rem 0 .2rem;font-weight:600} textarea{width:100%;height:6rem}
 input[type=text],select{width:100%} .row{display:flex;gap:1rem} .row>div{flex:1}
 button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem} #status{white-space:pre-wrap;color:#555}
</style></head><body>
<h1>gsv-jax text to speech</h1>
<form id="f">
 <label for="voice">Voice</label>
 <select id="voice" name="voice"><option value="">(upload a reference below)</option></select>
 <label for="ref_audio">Reference clip (3-10 s; used when no voice is chosen)</label>
 <input type="file" id="ref_audio" name="ref_audio" accept="audio/*">
 <div class="row"><div><label for="prompt_text">What the reference says (empty: reference-free)</label>
 <input type="text" id="prompt_text" name="prompt_text"></div>
 <div><label for="prompt_lang">Its language</label><select id="prompt_lang" name="prompt_lang"></select></div></div>
 <label for="text">Text to speak</label><textarea id="text" name="text"></textarea>
 <div class="row"><div><label for="text_lang">Text language</label><select id="text_lang" name="text_lang"></select></div>
 <div><label for="top_k">top_k</label><input type="text" id="top_k" name="top_k" value="15"></div>
 <div><label for="temperature">temperature</label><input type="text" id="temperature" name="temperature" value="1"></div>
 <div><label for="speed_factor">speed</label><input type="text" id="speed_factor" name="speed_factor" value="1.0"></div></div>
 <button type="submit" id="go">Speak</button>
</form>
<p id="status"></p>
<audio id="player" controls></audio>
<p><a id="download" download="speech.wav" hidden>Download the WAV</a></p>
<script>
const $ = (id) => document.getElementById(id);
const status = (s) => { $("status").textContent = s; };
async function init() {
  const health = await (await fetch("/health")).json();
  for (const id of ["prompt_lang", "text_lang"]) {
    for (const l of health.languages) { const o = document.createElement("option"); o.value = o.textContent = l; $(id).appendChild(o); }
  }
  $("text_lang").value = "auto"; $("prompt_lang").value = "zh";
  const voices = await (await fetch("/voices")).json();
  for (const [name, v] of Object.entries(voices)) {
    const o = document.createElement("option"); o.value = name; o.textContent = name; $("voice").appendChild(o);
  }
  $("voice").addEventListener("change", () => {
    const v = voices[$("voice").value]; if (v) { $("prompt_text").value = v.prompt_text; $("prompt_lang").value = v.prompt_lang; }
  });
  const q = new URLSearchParams(location.search);
  if (q.get("voice")) { $("voice").value = q.get("voice"); $("voice").dispatchEvent(new Event("change")); }
  if (q.get("text")) $("text").value = q.get("text");
  if (q.get("text_lang")) $("text_lang").value = q.get("text_lang");
  if (q.get("top_k")) $("top_k").value = q.get("top_k");
  status("ready (" + health.version + ", " + health.sample_rate + " Hz)");
  if (q.get("autorun")) speak();
}
async function speak(ev) {
  if (ev) ev.preventDefault();
  const fd = new FormData($("f"));
  if (!$("ref_audio").files.length) fd.delete("ref_audio");
  if (!fd.get("voice")) fd.delete("voice");
  fd.set("media_type", "wav");
  status("synthesizing ...");
  const t0 = performance.now();
  const r = await fetch("/tts", { method: "POST", body: fd });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ message: r.statusText }));
    status("error: " + e.message + (e.Exception ? " (" + e.Exception + ")" : ""));
    document.title = "error";
    return;
  }
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  $("player").src = url; $("download").href = url; $("download").hidden = false;
  const secs = ((performance.now() - t0) / 1000).toFixed(2);
  status("done: " + blob.size + " bytes of " + blob.type + " in " + secs + " s");
  document.title = "done:" + blob.size;
}
$("f").addEventListener("submit", speak);
init().catch((e) => status("error: " + e));
</script></body></html>
"""
