// The demo page: upload through a signed upload link, delete through signed remove links.
// Every failure resets the progress bar and says in the status line what failed and why.
"use strict";

const uploadLinkUrl = document.currentScript.dataset.uploadLinkUrl;
const fileInput = document.getElementById("file-input");
const uploadButton = document.getElementById("upload-button");
const progress = document.getElementById("upload-progress");
const statusText = document.getElementById("upload-status");

function showStatus(message, isError = false) {
  statusText.textContent = message;
  statusText.classList.toggle("error", isError);
}

// A name short enough for the status line: a 400-character name keeps its start and end.
function shortName(name) {
  return name.length > 60 ? `${name.slice(0, 40)}…${name.slice(-15)}` : name;
}

// What the server said went wrong: the link view and this app answer a sentence (plain text
// or {"error": ...}); anything else (a proxy's page, S3's XML) is named by its status.
function serverMessage(status, contentType, body) {
  if (contentType.startsWith("application/json")) {
    try {
      const error = JSON.parse(body).error;
      if (error) return error;
    } catch (parseError) {
      // not the app's JSON: fall through to the status
    }
  } else if (contentType.startsWith("text/plain") && body.trim()) {
    return body.trim();
  }
  if (status === 413) return "This file is larger than the server accepts.";
  if (status >= 500) return `The server failed (status ${status}). Please try again later.`;
  return `The server refused it (status ${status}).`;
}

async function requestUploadLink(file) {
  const response = await fetch(uploadLinkUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ filename: file.name, content_type: file.type }),
  });
  const body = await response.text();
  const contentType = response.headers.get("Content-Type") || "";
  if (!response.ok) throw new Error(serverMessage(response.status, contentType, body));
  return JSON.parse(body);
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
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve();
        return;
      }
      const contentType = xhr.getResponseHeader("Content-Type") || "";
      reject(new Error(serverMessage(xhr.status, contentType, xhr.responseText)));
    };
    xhr.onerror = () => reject(new Error("The connection to the storage failed."));
    xhr.send(file);
  });
}

uploadButton.addEventListener("click", async () => {
  const file = fileInput.files[0];
  if (!file) {
    showStatus("Choose a file first.", true);
    return;
  }
  progress.value = 0;
  uploadButton.disabled = true;
  showStatus(`Uploading ${shortName(file.name)}…`);
  try {
    const link = await requestUploadLink(file);
    await putFile(link, file);
    showStatus(`Uploaded ${shortName(link.name)}.`);
    await refreshFiles();
  } catch (error) {
    progress.value = 0;
    showStatus(`Could not upload ${shortName(file.name)}. ${error.message}`, true);
  } finally {
    uploadButton.disabled = false;
  }
});

// Reload the list of files (with fresh links) from the page itself.
async function refreshFiles() {
  const response = await fetch(window.location.href, { cache: "no-store" });
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  document.querySelector("#files tbody").replaceWith(page.querySelector("#files tbody"));
}

// Delete asks first: the browser's own confirmation dialog, which names the file.
document.getElementById("files").addEventListener("click", async (event) => {
  const button = event.target.closest("button.delete");
  if (!button) return;
  const name = button.closest("tr").dataset.name;
  if (!window.confirm(`Delete ${name}? This cannot be undone.`)) {
    showStatus(`Kept ${shortName(name)}.`);
    return;
  }
  const response = await fetch(button.dataset.url, { method: "DELETE" });
  if (response.ok) {
    showStatus(`Deleted ${shortName(name)}.`);
    await refreshFiles();
  } else {
    const contentType = response.headers.get("Content-Type") || "";
    const message = serverMessage(response.status, contentType, await response.text());
    showStatus(`Could not delete ${shortName(name)}. ${message}`, true);
  }
});
