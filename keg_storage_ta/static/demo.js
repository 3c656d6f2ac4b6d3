// The demo page: upload through a signed upload link, delete through signed remove links.
"use strict";

const uploadLinkUrl = document.currentScript.dataset.uploadLinkUrl;
const fileInput = document.getElementById("file-input");
const progress = document.getElementById("upload-progress");
const statusText = document.getElementById("upload-status");

async function requestUploadLink(file) {
  const response = await fetch(uploadLinkUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ filename: file.name, content_type: file.type }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// fetch() reports no upload progress, so the PUT goes through XMLHttpRequest, whose
// upload.onprogress feeds the progress bar. The request is the same: PUT, the signed
// Content-Type, the raw file as the body (as for an S3 presigned URL).
function putFile(link, file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(link.method, link.url);
    for (const [name, value] of Object.entries(link.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) progress.value = (100 * event.loaded) / event.total;
    };
    xhr.onload = () =>
      xhr.status >= 200 && xhr.status < 300
        ? resolve()
        : reject(new Error(`upload failed: ${xhr.status} ${xhr.statusText}`));
    xhr.onerror = () => reject(new Error("upload failed: network error"));
    xhr.send(file);
  });
}

document.getElementById("upload-button").addEventListener("click", async () => {
  const file = fileInput.files[0];
  if (!file) {
    statusText.textContent = "Choose a file first.";
    return;
  }
  progress.value = 0;
  statusText.textContent = `Uploading ${file.name}…`;
  try {
    const link = await requestUploadLink(file);
    await putFile(link, file);
    statusText.textContent = `Uploaded ${link.name}.`;
    await refreshFiles();
  } catch (error) {
    statusText.textContent = error.message;
  }
});

// Reload the list of files (with fresh links) from the page itself.
async function refreshFiles() {
  const response = await fetch(window.location.href, { cache: "no-store" });
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  document.querySelector("#files tbody").replaceWith(page.querySelector("#files tbody"));
}

document.getElementById("files").addEventListener("click", async (event) => {
  const button = event.target.closest("button.delete");
  if (!button) return;
  const response = await fetch(button.dataset.url, { method: "DELETE" });
  if (response.ok) {
    statusText.textContent = `Deleted ${button.closest("tr").dataset.name}.`;
    await refreshFiles();
  } else {
    statusText.textContent = `delete failed: ${response.status}`;
  }
});
