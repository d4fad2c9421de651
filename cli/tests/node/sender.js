// Sends deliveries the way Periskope does: the body is JSON.stringify(payload), signed with
// Node's crypto HMAC-SHA256 under the key (hex, in x-periskope-signature).
//
//   PERISKOPE_SIGNING_KEY=peri_... node sender.js URL FILE... 
//
// Each FILE is read with JSON.parse; then one delivery of an event name no client knows is
// sent. Prints `STATUS EVENT` per delivery; exits 1 if a delivery was not answered 2xx.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const [url, ...files] = process.argv.slice(2);
const key = process.env.PERISKOPE_SIGNING_KEY;
if (!url || !key) {
  console.error('usage: PERISKOPE_SIGNING_KEY=... node sender.js URL FILE...');
  process.exit(2);
}

function post(payload) {
  const body = JSON.stringify(payload);
  const signature = crypto.createHmac('sha256', key).update(body).digest('hex');
  return new Promise((resolve, reject) => {
    const request = http.request(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-periskope-signature': signature,
      },
      timeout: 10000,
    }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 10 s')));
    request.on('error', reject);
    request.end(body);
  });
}

async function main() {
  const payloads = files.map((file) => JSON.parse(fs.readFileSync(file, 'utf8')));
  payloads.push({
    event: 'contact.merged',
    data: { contact_id: '919289665999@c.us', merged_into: '919004389372@c.us' },
    org_id: '2997dd64-89bf-48d3-9a22-b314fca017e5',
    timestamp: new Date().toISOString(),
  });
  let failed = 0;
  for (const payload of payloads) {
    const status = await post(payload);
    console.log(`${status} ${payload.event || payload.event_type}`);
    if (status < 200 || status > 299) failed += 1;
  }
  process.exit(failed ? 1 : 0);
}

main().catch((error) => {
  console.error(`sender failed: ${error.message}`);
  process.exit(2);
});
