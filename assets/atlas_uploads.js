/* Why a picture dropped on an upload box was refused.
 *
 * dcc.Upload refuses a file over its max_size, or of a type its accept list lacks, in the browser and
 * fires no callback (plotly/dash#2638): without this the person saw nothing happen. Each box
 * (pages/_common.py upload_box, .atlas-upload-box) has a line under its drop zone,
 * .atlas-upload-refused, carrying the server's limits in data attributes; a drop or a file chosen in
 * the dialog is checked against them here, and the line says what to send instead (or is emptied for a
 * file the box takes).
 *
 * A file the box takes first clears the upload's contents: Dash fires no callback for a prop set to the
 * value it already holds, so the same picture dropped again (after picking a galaxy, or changing what
 * to search) did nothing. The file input is emptied too, so choosing the same file in the dialog again
 * still fires a change.
 */
(function () {
    'use strict';

    function megabytes(bytes) { return (bytes / 1048576).toFixed(1).replace(/\.0$/, '') + ' MB'; }

    function check(event) {
        const box = event.target && event.target.closest ? event.target.closest('.atlas-upload-box') : null;
        const note = box ? box.querySelector('.atlas-upload-refused') : null;
        if (!note) { return; }
        const files = event.type === 'drop' ? (event.dataTransfer && event.dataTransfer.files) : event.target.files;
        note.textContent = '';
        if (!files || !files.length) { return; }
        const file = files[0];
        const max = Number(note.dataset.maxBytes);
        const types = (note.dataset.types || '').split(',');
        if (types.indexOf(file.type) < 0) {
            note.textContent = file.name + ' was not sent: ' + (file.type || 'its type') +
                ' is not accepted. Send a JPEG, PNG, GIF or WebP picture.';
        } else if (file.size > max) {
            note.textContent = file.name + ' was not sent: it is ' + megabytes(file.size) +
                ', and pictures up to ' + megabytes(max) + ' are accepted.';
        } else if (box.firstElementChild && box.firstElementChild.contains(event.target)) {
            rearm(box, event.target);  // a file the drop zone itself takes (not the line under it)
        }
    }

    function rearm(box, target) {
        const upload = box.firstElementChild;  // the dcc.Upload, carrying its component id
        const input = upload.querySelector('input[type=file]');
        if (input && input.disabled) { return; }  // a disabled box takes nothing: keep what it holds
        if (upload.id && window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props(upload.id, {contents: null});
        }
        if (target && target.type === 'file') {
            setTimeout(function () { target.value = ''; }, 0);  // after the drop zone has read its files
        }
    }

    document.addEventListener('drop', check, true);
    document.addEventListener('change', check, true);
})();
